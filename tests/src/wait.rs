//! Waiting for a condition by polling it, never by a fixed sleep.
//!
//! A test that sleeps "long enough" is slow on a fast machine and flaky on
//! a loaded one; a test that polls is as fast as the system allows and
//! only gives up at a generous limit, which bounds a hung test and is never
//! a timing assertion. [`wait_for`] polls a plain closure, [`wait_for_async`]
//! one that awaits (an HTTP call, a database on a blocking thread). Both
//! return the condition's last value, so one function serves `bool`
//! conditions (`assert!(wait_for(limit, || done()).await)`) and `Option`
//! ones that hand back what they found (`wait_for(..).await.expect(..)`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Pause between polls of a plain condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Pause between polls of an async condition (which usually does I/O).
pub const POLL_ASYNC: Duration = Duration::from_millis(50);

/// A polled value that says whether the wait is over.
pub trait Condition {
    /// True once the condition holds.
    fn holds(&self) -> bool;
}

impl Condition for bool {
    fn holds(&self) -> bool {
        *self
    }
}

impl<T> Condition for Option<T> {
    fn holds(&self) -> bool {
        self.is_some()
    }
}

/// Poll `f` until its value holds or `limit` has passed; returns the last
/// value (`false` / `None` on time-out). `f` runs at least once, and once
/// more at the limit.
pub async fn wait_for<C: Condition>(limit: Duration, mut f: impl FnMut() -> C) -> C {
    let deadline = Instant::now() + limit;
    loop {
        let value = f();
        if value.holds() || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`wait_for`], for a condition that has to await.
pub async fn wait_for_async<C, F, Fut>(limit: Duration, mut f: F) -> C
where
    C: Condition,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let deadline = Instant::now() + limit;
    loop {
        let value = f().await;
        if value.holds() || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(POLL_ASYNC).await;
    }
}

/// Reads a counter every 300 ms until two reads agree, and returns it:
/// for totals that are still being added to when a transfer has just
/// ended (bytes a server has sent). Unlike [`wait_for`] it has no limit:
/// a counter that never settles hangs the test, which then times out.
pub async fn settled<F, Fut>(mut read: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = read().await;
        if (now - last).abs() < f64::EPSILON {
            return now;
        }
        last = now;
    }
}

/// Blocking form of [`wait_for`] for code outside a runtime (process and
/// port readiness): polls `f` on this thread.
pub fn wait_blocking<C: Condition>(limit: Duration, mut f: impl FnMut() -> C) -> C {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let value = f();
        if value.holds() || std::time::Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_as_soon_as_the_condition_holds() {
        let mut n = 0;
        let got = wait_for(Duration::from_secs(10), || {
            n += 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, Some(3));
    }

    #[tokio::test]
    async fn gives_up_at_the_limit_with_the_last_value() {
        assert!(!wait_for(Duration::from_millis(50), || false).await);
        let none: Option<u8> = wait_for_async(Duration::from_millis(50), || async { None }).await;
        assert!(none.is_none());
    }

    #[test]
    fn blocking_form_polls_too() {
        let mut n = 0;
        assert!(wait_blocking(Duration::from_secs(10), || {
            n += 1;
            n > 2
        }));
    }
}
