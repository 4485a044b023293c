//! An online baseline of one quantity: exponentially weighted mean and mean
//! absolute deviation, and a band around them.
//!
//! EWMA with a deviation band is the robust, constant-memory statistic the
//! detector keeps per device for payload size and inter-arrival time: it
//! follows slow drift (a device's own normal), forgets old history, and
//! costs three numbers. Values judged anomalous are not folded in, so an
//! attacker cannot drag a baseline along quickly.

/// Exponentially weighted mean and mean absolute deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    alpha: f64,
    mean: f64,
    deviation: f64,
    count: u64,
}

impl Ewma {
    /// A baseline with smoothing factor `alpha` (0 < alpha <= 1; about
    /// `2 / alpha` samples of memory).
    #[must_use]
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha: alpha.clamp(f64::EPSILON, 1.0),
            mean: 0.0,
            deviation: 0.0,
            count: 0,
        }
    }

    /// Fold `x` in.
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.count == 0 {
            self.mean = x;
            self.deviation = 0.0;
        } else {
            // Faster learning while young: a plain running mean at first.
            #[allow(clippy::cast_precision_loss)] // counts stay small
            let a = self.alpha.max(1.0 / (self.count as f64 + 1.0));
            let d = (x - self.mean).abs();
            self.mean += a * (x - self.mean);
            self.deviation += a * (d - self.deviation);
        }
        self.count = self.count.saturating_add(1);
    }

    /// Samples folded in so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The current mean.
    #[must_use]
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The current mean absolute deviation.
    #[must_use]
    pub fn deviation(&self) -> f64 {
        self.deviation
    }

    /// How far `x` lies above the mean, in deviations (with `floor` as the
    /// least deviation assumed, so a perfectly steady series is not
    /// infinitely sensitive).
    #[must_use]
    pub fn score_above(&self, x: f64, floor: f64) -> f64 {
        (x - self.mean) / self.deviation.max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_steady_series_and_scores_outliers() {
        let mut e = Ewma::new(0.05);
        for i in 0..200 {
            e.update(300.0 + f64::from(i % 5));
        }
        assert!((e.mean() - 302.0).abs() < 1.0, "{}", e.mean());
        assert!(e.deviation() < 2.0);
        assert!(e.score_above(3000.0, 1.0) > 100.0);
        assert!(e.score_above(303.0, 1.0) < 2.0);
        assert_eq!(e.count(), 200);
    }

    #[test]
    fn ignores_non_finite_values() {
        let mut e = Ewma::new(0.1);
        e.update(f64::NAN);
        e.update(f64::INFINITY);
        assert_eq!(e.count(), 0);
    }
}
