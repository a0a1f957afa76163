//! Prometheus metrics (OpenMetrics text, prometheus-client), served on --metrics-listen:
//! calls by method and status code, delete latency by path, containers by status,
//! kill-and-wait timeouts and teardown warnings.
use std::sync::{Arc, OnceLock};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry as MetricRegistry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{container::Status, registry::Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

pub struct Metrics {
    registry: MetricRegistry,
    calls: Family<CallLabels, Counter>,
    delete_seconds: Family<PathLabel, Histogram>,
    containers: Family<StatusLabel, Gauge>,
    kill_wait_timeouts: Counter,
    teardown_warnings: Counter,
}

/// The daemon's metrics: one set per process, like the process itself.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = MetricRegistry::with_prefix("berth");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "ContainerService calls by method and gRPC status code",
            calls.clone(),
        );
        // From 0.5 ms to about 16 s: a delete that waits out its whole kill still fits.
        let delete_seconds = Family::<PathLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0005, 2.0, 16,
            ))
        });
        registry.register(
            "delete_seconds",
            "Successful DeleteContainer latency by path: stopped, created, forced",
            delete_seconds.clone(),
        );
        let containers = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "containers",
            "Containers by status at the time of the scrape",
            containers.clone(),
        );
        let kill_wait_timeouts = Counter::default();
        registry.register(
            "kill_wait_timeouts",
            "Kill-and-wait rounds that ran out with the init still alive",
            kill_wait_timeouts.clone(),
        );
        let teardown_warnings = Counter::default();
        registry.register(
            "teardown_warnings",
            "Warnings of successful deletes (failed poststop hooks, unreadable state)",
            teardown_warnings.clone(),
        );
        Self {
            registry,
            calls,
            delete_seconds,
            containers,
            kill_wait_timeouts,
            teardown_warnings,
        }
    }

    pub fn call(&self, method: &'static str, code: tonic::Code) {
        self.calls
            .get_or_create(&CallLabels {
                method,
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// `path`: "stopped", "created" or "forced".
    pub fn delete(&self, path: &'static str, seconds: f64) {
        self.delete_seconds
            .get_or_create(&PathLabel { path })
            .observe(seconds);
    }

    pub fn kill_wait_timeout(&self) {
        self.kill_wait_timeouts.inc();
    }

    pub fn teardown_warnings(&self, count: usize) {
        self.teardown_warnings.inc_by(count as u64);
    }

    fn render(&self, statuses: impl Iterator<Item = Status>) -> String {
        let all = [
            Status::Created,
            Status::Running,
            Status::Paused,
            Status::Stopped,
            Status::Unknown,
        ];
        let mut counts = [0i64; 5];
        for status in statuses {
            if let Some(index) = all.iter().position(|s| *s == status) {
                counts[index] += 1;
            }
        }
        for (status, count) in all.iter().zip(counts) {
            self.containers
                .get_or_create(&StatusLabel {
                    status: status.to_string(),
                })
                .set(count);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

/// Serves `GET /metrics` over plain HTTP/1.1, one request per connection.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            // The request line and headers; anything past 8 KiB is not a scrape.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let response = if request.starts_with(b"GET /metrics ") {
                let statuses = registry.list().await.into_iter().map(|s| s.status);
                let body = global().render(statuses);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
