//! Client-side QPS and burst for the API server (`--kube-qps`, `--kube-burst`), as client-go
//! has them: a token bucket holding up to `burst` tokens, refilled at `qps` per second; every
//! request (a watch's start included) takes one.
//!
//! The bucket is plain arithmetic over instants ([`TokenBucket`]); [`RateLimitLayer`] is the thin
//! tower layer under the kube client that waits for a token in `poll_ready`. kube's `Client`
//! puts a `Buffer` in front of its service, so requests from every task queue there in arrival
//! order and take tokens one after the other.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// Tokens of one bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `qps` > 0 and `burst` ≥ 1 (the flags are checked before).
    pub fn new(qps: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.qps;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

/// The layer that puts a [`TokenBucket`] under the kube client.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitLayer {
    qps: f64,
    burst: u32,
}

impl RateLimitLayer {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self { qps, burst }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: TokenBucket::new(self.qps, self.burst, Instant::now()),
            sleep: None,
            holding: false,
        }
    }
}

/// A service that sends a request only with a token.
pub struct RateLimit<S> {
    inner: S,
    bucket: TokenBucket,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A token was taken for the next `call` (kept across an inner service that is not ready).
    holding: bool,
}

impl<S, R> Service<R> for RateLimit<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.holding {
            if let Some(sleep) = self.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            match self.bucket.take(Instant::now()) {
                Ok(()) => self.holding = true,
                Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.holding = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_gives_burst_tokens_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        let wait = b.take(t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(50)).is_err());
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Ok(()));
        // A long pause refills to `burst`, never beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn fractional_rates_wait_the_right_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.5, 1, t0);
        assert_eq!(b.take(t0), Ok(()));
        let wait = b.take(t0 + Duration::from_millis(500)).expect_err("empty");
        assert!((wait.as_secs_f64() - 1.5).abs() < 1e-9, "{wait:?}");
    }

    /// Through the layer: with qps 20 and burst 5, 25 requests take about (25 - 5) / 20 = 1 s
    /// of (paused, so exact) tokio time.
    #[tokio::test(start_paused = true)]
    async fn the_layer_spaces_requests_by_the_bucket() {
        use tower::ServiceExt as _;
        let svc =
            tower::service_fn(|()| async { Ok::<_, std::convert::Infallible>(Instant::now()) });
        let mut svc = RateLimitLayer::new(20.0, 5).layer(svc);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..25 {
            times.push(svc.ready().await.unwrap().call(()).await.unwrap() - start);
        }
        assert!(times[..5].iter().all(|t| *t == Duration::ZERO), "{times:?}");
        assert_eq!(times[5], Duration::from_millis(50));
        let last = times[24].as_secs_f64();
        assert!((last - 1.0).abs() < 0.001, "{times:?}");
    }
}
