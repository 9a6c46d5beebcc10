//! What `revgen train` shows while it runs: on a terminal, a bar redrawn in place with step, loss, val loss,
//! tokens/s, lr and ETA; otherwise (logs, CI, `kubectl logs`) one plain line per step. Samples, saves and notes are
//! printed on lines of their own. Everything goes to stderr; stdout keeps the final report.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::train::{Event, StepMetrics};

pub struct TrainProgress {
    terminal: bool,
    first_step: Option<u64>,
    last_val: Option<f64>,
    /// Smoothed seconds per step, for the ETA.
    step_s: Option<f64>,
    last_elapsed: f64,
}

impl TrainProgress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self::with_terminal(std::io::stderr().is_terminal())
    }

    pub fn with_terminal(terminal: bool) -> Self {
        TrainProgress { terminal, first_step: None, last_val: None, step_s: None, last_elapsed: 0.0 }
    }

    pub fn event(&mut self, event: Event) {
        let mut err = std::io::stderr().lock();
        match event {
            Event::Started { step, steps, resumed_from, params, seq_len, backend } => {
                let from = match resumed_from {
                    Some(dir) => format!("resuming from {} at step {step}", dir.display()),
                    None => "starting at step 0".to_owned(),
                };
                let _ = writeln!(
                    err,
                    "training {:.1}M parameters on {backend}, {seq_len}-token windows, {steps} steps; {from}",
                    params as f64 / 1e6
                );
            }
            Event::Step(m) => {
                let line = self.step_line(&m);
                if self.terminal {
                    let _ = write!(err, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(err, "{line}");
                }
            }
            Event::Sample { step, text, path } => {
                self.clear(&mut err);
                let _ = writeln!(err, "======== sample at step {step} ({}) ========\n{text}", path.display());
            }
            Event::Saved { step, path } => {
                self.clear(&mut err);
                let _ = writeln!(err, "saved checkpoint at step {step}: {}", path.display());
            }
            Event::Note(note) => {
                self.clear(&mut err);
                let _ = writeln!(err, "note: {note}");
            }
        }
        let _ = err.flush();
    }

    fn clear(&self, err: &mut impl Write) {
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K");
        }
    }

    /// `step 120/2048 [###-------] loss 3.2104 val 3.4012 | 12.3K tok/s | lr 1.00e-04 | 1m02s, ETA 5m10s`
    fn step_line(&mut self, m: &StepMetrics) -> String {
        if let Some(v) = m.val_loss {
            self.last_val = Some(v);
        }
        let first = *self.first_step.get_or_insert(m.step.saturating_sub(1));
        let dt = m.elapsed_s - self.last_elapsed;
        self.last_elapsed = m.elapsed_s;
        if m.step > first + 1 || self.step_s.is_none() {
            // The first step includes warm-up costs (allocations, kernel selection): let later ones dominate.
            self.step_s = Some(self.step_s.map_or(dt, |s| 0.9 * s + 0.1 * dt));
        }
        let eta = self.step_s.map_or(0.0, |s| s * m.steps.saturating_sub(m.step) as f64);
        let val = self.last_val.map(|v| format!(" val {v:.4}")).unwrap_or_default();
        let bar = if self.terminal { format!(" {}", bar(m.step, m.steps, 20)) } else { String::new() };
        format!(
            "step {}/{}{bar} loss {:.4}{val} | {} tok/s | lr {:.2e} | {}, ETA {}",
            m.step,
            m.steps,
            m.loss,
            si(m.tokens_per_s),
            m.lr,
            duration(m.elapsed_s),
            duration(eta)
        )
    }
}

impl Default for TrainProgress {
    fn default() -> Self {
        Self::new()
    }
}

fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = ((done as f64 / total.max(1) as f64) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled.min(width)), "-".repeat(width - filled.min(width)))
}

/// 12345.6 → `12.3K`.
fn si(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}K", x / 1e3),
        x => format!("{x:.0}"),
    }
}

/// 3725 s → `1h02m05s`.
pub fn duration(seconds: f64) -> String {
    let d = Duration::from_secs_f64(seconds.max(0.0));
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_carry_every_figure() {
        let mut p = TrainProgress::with_terminal(false);
        let m = StepMetrics {
            step: 3,
            steps: 10,
            loss: 3.21,
            val_loss: Some(3.4),
            lr: 1e-4,
            grad_norm: 0.5,
            tokens_per_s: 12345.0,
            tokens: 3000,
            elapsed_s: 65.0,
            peak_rss_mb: Some(900.0),
        };
        let line = p.step_line(&m);
        assert_eq!(line, "step 3/10 loss 3.2100 val 3.4000 | 12.3K tok/s | lr 1.00e-4 | 1m05s, ETA 7m35s");
        assert_eq!(duration(3725.0), "1h02m05s");
    }
}
