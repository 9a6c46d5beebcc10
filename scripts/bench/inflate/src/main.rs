//! The floor of a scan over a `.gz` dump: inflate it on one core with flate2 (the zlib-rs backend revgen uses) and
//! throw the bytes away. `scripts/bench-stats.sh` runs it next to `revgen stats`.
//!
//!     cargo run --release --manifest-path scripts/bench/inflate/Cargo.toml -- FILE.gz

use std::fs::File;
use std::io::{BufReader, Read};
use std::time::Instant;

use flate2::read::MultiGzDecoder;

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).expect("usage: inflate FILE.gz");
    let started = Instant::now();
    let mut gz = MultiGzDecoder::new(BufReader::with_capacity(1 << 20, File::open(&path)?));
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = gz.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{total} bytes in {secs:.2} s ({:.0} MB/s)", total as f64 / secs / 1e6);
    Ok(())
}
