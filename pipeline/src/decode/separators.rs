//! Line ends and tabs of a chunk, found in one pass.
//!
//! A TSV line has 14 tabs, most of them a few bytes apart: searching for each with `memchr` (then the newline, then
//! the body once more for a stray tab) paid a search's start-up cost ~15 times a line, and read the body twice. On
//! x86_64 this looks at 64 bytes at a time with SSE2 (part of every x86_64 CPU), as bitmasks of tabs and newlines,
//! and visits only the set bits: over the 1.6 GB benchmark dump, the split (with the UTF-8 check) took 0.5 s of CPU
//! instead of 1.0 s in a microbenchmark. Other targets split lines with `memchr` and then each line's tabs.

use std::ops::ControlFlow;

/// The tabs of a TSV line this reader ever needs to know by position: a valid line has exactly 14.
pub const MAX_TABS: usize = 15;

/// Where the tabs of one line are: the first [`MAX_TABS`] as offsets into the line, and how many there are in all;
/// and whether the line is all ASCII (then it is valid UTF-8 without another look).
#[derive(Debug, Clone, Default)]
pub struct Tabs {
    at: [usize; MAX_TABS],
    count: usize,
    ascii: bool,
}

/// Equal when the lines' tabs and ASCII-ness are (slots past the count are leftovers of an earlier line).
impl PartialEq for Tabs {
    fn eq(&self, other: &Self) -> bool {
        (self.count, self.ascii, self.offsets()) == (other.count, other.ascii, other.offsets())
    }
}

impl Eq for Tabs {}

impl Tabs {
    /// The tabs of a whole line, searched on their own (a line that spans two chunks).
    pub fn of_line(line: &[u8]) -> Tabs {
        let mut tabs = Tabs { ascii: line.is_ascii(), ..Tabs::default() };
        memchr::memchr_iter(b'\t', line).for_each(|at| tabs.push(at));
        tabs
    }

    /// Whether every byte of the line is ASCII.
    pub fn ascii(&self) -> bool {
        self.ascii
    }

    #[inline(always)]
    fn push(&mut self, offset: usize) {
        if let Some(slot) = self.at.get_mut(self.count) {
            *slot = offset;
        }
        self.count += 1;
    }

    /// How many tabs the line has.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The offsets of the first [`MAX_TABS`] tabs, in order.
    pub fn offsets(&self) -> &[usize] {
        &self.at[..self.count.min(MAX_TABS)]
    }
}

/// Calls `on_line(start, end, tabs)` for each line of `bytes` that ends in `\n` (`end` is the `\n`'s index, `tabs`
/// are relative to `start`), until it returns `Break`. Returns where the unfinished last line starts (`bytes.len()`
/// if there is none), or `None` if `on_line` stopped.
pub fn lines(bytes: &[u8], on_line: impl FnMut(usize, usize, &Tabs) -> ControlFlow<()>) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    return lines_sse2(bytes, on_line);
    #[cfg(not(target_arch = "x86_64"))]
    return lines_memchr(bytes, on_line);
}

/// [`lines`] with `memchr`: a search for each newline, then one for each tab of the line.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn lines_memchr(bytes: &[u8], mut on_line: impl FnMut(usize, usize, &Tabs) -> ControlFlow<()>) -> Option<usize> {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        on_line(start, end, &Tabs::of_line(&bytes[start..end])).is_continue().then_some(())?;
        start = end + 1;
    }
    Some(start)
}

/// [`lines`] over bitmasks of 64 bytes at a time. The same pass notes bytes with the high bit set, so that an
/// all-ASCII line (most of a dump) needs no UTF-8 check of its own. Tabs are noted inline and only a newline calls
/// out: a dump line has 14 tabs, and a call for each was a tenth of the split's time.
#[cfg(target_arch = "x86_64")]
fn lines_sse2(bytes: &[u8], mut on_line: impl FnMut(usize, usize, &Tabs) -> ControlFlow<()>) -> Option<usize> {
    let mut start = 0;
    let mut tabs = Tabs::default();
    // Whether the line being read has had a non-ASCII byte in an earlier block.
    let mut non_ascii = false;
    let mut blocks = bytes.chunks_exact(64);
    let mut base = 0;
    for block in &mut blocks {
        let (tab_mask, newline_mask, mut high_mask) = masks_sse2(block.try_into().expect("64 bytes"));
        let mut found = tab_mask | newline_mask;
        while found != 0 {
            let bit = found.trailing_zeros();
            let at = base + bit as usize;
            if newline_mask & (1 << bit) == 0 {
                tabs.push(at - start);
            } else {
                // The high bits below the newline belong to the line it ends.
                let below = (1u64 << bit) - 1;
                let ascii = !non_ascii && high_mask & below == 0;
                high_mask &= !below;
                non_ascii = false;
                end_line(&mut on_line, &mut tabs, &mut start, at, ascii).is_continue().then_some(())?;
            }
            found &= found - 1;
        }
        // What is left belongs to the line that continues into the next block.
        non_ascii |= high_mask != 0;
        base += 64;
    }
    for (i, &byte) in blocks.remainder().iter().enumerate() {
        match byte {
            b'\t' => tabs.push(base + i - start),
            b'\n' => {
                end_line(&mut on_line, &mut tabs, &mut start, base + i, !non_ascii).is_continue().then_some(())?;
                non_ascii = false;
            }
            _ => non_ascii |= !byte.is_ascii(),
        }
    }
    Some(start)
}

/// Hands the line from `start` to the newline at `at`, with its tabs, to `on_line`, and starts the next line.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn end_line(
    on_line: &mut impl FnMut(usize, usize, &Tabs) -> ControlFlow<()>,
    tabs: &mut Tabs,
    start: &mut usize,
    at: usize,
    ascii: bool,
) -> ControlFlow<()> {
    tabs.ascii = ascii;
    let flow = on_line(*start, at, tabs);
    *start = at + 1;
    tabs.count = 0;
    flow
}

/// Bit `i` of the first mask is set where `block[i]` is a tab; of the second, where it is a newline; of the third,
/// where it is not ASCII.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks_sse2(block: &[u8; 64]) -> (u64, u64, u64) {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let (mut tabs, mut newlines, mut high) = (0u64, 0u64, 0u64);
    for (i, lane) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline, and `lane` is 16 readable bytes (an unaligned load).
        let (tab, newline, top) = unsafe {
            let v = _mm_loadu_si128(lane.as_ptr().cast::<__m128i>());
            (
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8))),
                _mm_movemask_epi8(v),
            )
        };
        // movemask sets the low 16 bits only.
        tabs |= u64::from(tab as u16) << (16 * i);
        newlines |= u64::from(newline as u16) << (16 * i);
        high |= u64::from(top as u16) << (16 * i);
    }
    (tabs, newlines, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    type OnLine<'f> = &'f mut dyn FnMut(usize, usize, &Tabs) -> ControlFlow<()>;

    fn collect(
        bytes: &[u8],
        split: fn(&[u8], OnLine<'_>) -> Option<usize>,
    ) -> (Vec<(usize, usize, Tabs)>, Option<usize>) {
        let mut found = Vec::new();
        let rest = split(bytes, &mut |start, end, tabs| {
            found.push((start, end, tabs.clone()));
            ControlFlow::Continue(())
        });
        (found, rest)
    }

    fn both(bytes: &[u8]) -> (Vec<(usize, usize, Tabs)>, Option<usize>) {
        let fast = collect(bytes, |b, f| lines(b, f));
        let portable = collect(bytes, |b, f| lines_memchr(b, f));
        assert_eq!(fast, portable, "{:?}", String::from_utf8_lossy(bytes));
        fast
    }

    #[test]
    fn finds_lines_and_tabs_across_block_edges() {
        // Lines of every length around the 64-byte blocks, tabs at block edges, empty lines, no final newline.
        let mut text = Vec::new();
        for len in 0..200 {
            let mut line: Vec<u8> = (0..len).map(|i| if i % 7 == 3 || i % 64 == 63 { b'\t' } else { b'a' }).collect();
            line.push(b'\n');
            text.extend_from_slice(&line);
        }
        text.extend_from_slice(b"\t\tunfinished");
        let (found, rest) = both(&text);
        assert_eq!(found.len(), 200);
        assert_eq!(rest, Some(text.len() - 12));
        let (start, end, tabs) = &found[20];
        assert_eq!(end - start, 20);
        assert_eq!(tabs.offsets(), &[3, 10, 17]);
        assert_eq!(found[0].2.count(), 0);
    }

    #[test]
    fn counts_tabs_past_the_ones_it_keeps() {
        let line = format!("{}\n", "x\t".repeat(40));
        let (found, rest) = both(line.as_bytes());
        assert_eq!(rest, Some(line.len()));
        assert_eq!(found[0].2.count(), 40);
        assert_eq!(found[0].2.offsets(), (0..MAX_TABS).map(|i| 2 * i + 1).collect::<Vec<_>>());
        assert_eq!(Tabs::of_line(&line.as_bytes()[..line.len() - 1]), found[0].2);
    }

    #[test]
    fn tells_ascii_lines_across_block_edges() {
        // A two-byte character at every offset around the blocks, in lines of every length; the reference is
        // `is_ascii` of each line (lines_memchr).
        let mut text = Vec::new();
        for len in 0usize..150 {
            for at in [None, Some(0), Some(len / 2), Some(len.saturating_sub(2))] {
                let mut line: Vec<u8> = (0..len).map(|i| if i % 5 == 1 { b'\t' } else { b'a' }).collect();
                if let Some(at) = at.filter(|&at| at + 2 <= len) {
                    line[at..at + 2].copy_from_slice("é".as_bytes());
                }
                line.push(b'\n');
                text.extend_from_slice(&line);
            }
        }
        let (found, _) = both(&text);
        assert!(found.iter().any(|(_, _, tabs)| tabs.ascii()) && found.iter().any(|(_, _, tabs)| !tabs.ascii()));
    }

    #[test]
    fn stops_when_asked() {
        let text = "a\nb\nc\n".repeat(40);
        let mut seen = 0;
        let rest = lines(text.as_bytes(), |_, _, _| {
            seen += 1;
            if seen == 70 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        assert_eq!((seen, rest), (70, None));
    }
}
