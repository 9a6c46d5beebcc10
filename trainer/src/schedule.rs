//! Learning-rate schedules: gpt-2-simple's constant rate, or nanoGPT's linear warmup then cosine decay.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `lr` after the warmup (gpt-2-simple's default, with no warmup).
    Constant,
    /// Cosine decay from `lr` after the warmup down to `min_lr` at the last step (nanoGPT).
    Cosine,
}

/// The learning rate of each step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub schedule: Schedule,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    /// The step count the decay ends at.
    pub steps: u64,
}

impl LrSchedule {
    /// The rate for the update that takes the model from `step` to `step + 1`.
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
                let progress = ((step - self.warmup) as f64 / span).min(1.0);
                let coeff = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.min_lr + coeff * (self.lr - self.min_lr)
            }
        }
    }
}

impl FromStr for Schedule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(Error::InvalidTraining(format!("unknown schedule {other:?}: expected constant or cosine"))),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_min_lr_at_the_end() {
        let s = LrSchedule { schedule: Schedule::Cosine, lr: 1e-3, min_lr: 1e-4, warmup: 10, steps: 110 };
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        assert!((s.at(60) - 5.5e-4).abs() < 1e-12);
        assert!((s.at(110) - 1e-4).abs() < 1e-12);
        assert!((s.at(500) - 1e-4).abs() < 1e-12);
        let c = LrSchedule { schedule: Schedule::Constant, warmup: 0, ..s };
        assert_eq!(c.at(0), 1e-3);
        assert_eq!(c.at(109), 1e-3);
    }
}
