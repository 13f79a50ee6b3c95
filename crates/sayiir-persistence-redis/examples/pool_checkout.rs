//! Measures what a pool checkout costs per operation, for the README's connection notes.
//!
//! `cargo run --release -p sayiir-persistence-redis --example pool_checkout [redis-url]`
//! (`POOL_SIZE=n` sets the backend's connection count, default 2)
//!
//! Runs the same no-signal guard check (`check_and_cancel`, one `HEXISTS`) from 1 and from
//! 16 concurrent callers three ways: with a deadpool-redis checkout per operation (its
//! recycle sends `UNWATCH` + `PING` first), on one shared multiplexed connection, and
//! through `RedisBackend` (which keeps its connections checked out).

use std::time::{Duration, Instant};

use sayiir_persistence_redis::deadpool_redis::{Config, Runtime};
use sayiir_persistence_redis::{RedisBackend, RedisOptions, SignalStore, redis};

const OPS: usize = 20_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    let pool = Config::from_url(url.clone()).create_pool(Some(Runtime::Tokio1))?;
    let client = redis::Client::open(url.clone())?;
    let shared = client.get_multiplexed_async_connection().await?;
    let backend = RedisBackend::connect_with(
        &url,
        RedisOptions::default()
            .key_prefix("pool-checkout-example")
            .pool_size(std::env::var("POOL_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(2)),
    )
    .await?;
    let key = "{pool-checkout-example:x}:signals";

    for callers in [1_usize, 16] {
        let per = OPS / callers;
        let elapsed = run(callers, |_| {
            let pool = pool.clone();
            async move {
                for _ in 0..per {
                    let mut conn = pool.get().await?;
                    let _: bool =
                        redis::cmd("HEXISTS").arg(key).arg("Cancel").query_async(&mut conn).await?;
                }
                Ok(())
            }
        })
        .await?;
        report("deadpool checkout per op", callers, elapsed);

        let elapsed = run(callers, |_| {
            let mut conn = shared.clone();
            async move {
                for _ in 0..per {
                    let _: bool =
                        redis::cmd("HEXISTS").arg(key).arg("Cancel").query_async(&mut conn).await?;
                }
                Ok(())
            }
        })
        .await?;
        report("one multiplexed connection", callers, elapsed);

        let elapsed = run(callers, |i| {
            let backend = backend.clone();
            async move {
                let id = format!("x{i}");
                for _ in 0..per {
                    backend.check_and_cancel(&id, None).await?;
                }
                Ok(())
            }
        })
        .await?;
        report("RedisBackend::check_and_cancel", callers, elapsed);
    }
    Ok(())
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn run<F, Fut>(callers: usize, make: F) -> Result<Duration, Error>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..callers).map(|i| tokio::spawn(make(i))).collect();
    for handle in handles {
        handle.await??;
    }
    Ok(start.elapsed())
}

fn report(what: &str, callers: usize, elapsed: Duration) {
    #[allow(clippy::cast_precision_loss)]
    let rate = OPS as f64 / elapsed.as_secs_f64();
    println!("{what:<34} {callers:>2} callers: {rate:>9.0} ops/s");
}
