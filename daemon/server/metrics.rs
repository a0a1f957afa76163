//! Prometheus metrics (OpenMetrics text, prometheus-client), served on --metrics-listen:
//! calls by method and status code, delete latency by path, containers by status,
//! kill-and-wait timeouts and teardown warnings. Everything but the containers (read at
//! scrape time) is counted in one tower layer, [`MetricsLayer`], from the responses.
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry as MetricRegistry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use berth_runtime::{labels::Selector, registry::Registry, status::Status};
use tonic::codegen::http;

const SERVICE_PREFIX: &str = "/berth.v1.ContainerService/";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
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

    fn answered<B>(&self, method: &str, response: &http::Response<B>, took: f64) {
        // Unary successes carry their status in the trailers; errors (trailers-only
        // responses) in the headers.
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|value| value.to_str().ok()?.parse::<i32>().ok())
            .map_or(tonic::Code::Ok, tonic::Code::from_i32);
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
        if method != "DeleteContainer" {
            return;
        }
        // A delete answers DEADLINE_EXCEEDED only when its kill-and-wait ran out.
        if code == tonic::Code::DeadlineExceeded {
            self.kill_wait_timeouts.inc();
        }
        if let Some(deleted) = response.extensions().get::<Deleted>() {
            self.delete_seconds
                .get_or_create(&PathLabel { path: deleted.path })
                .observe(took);
            self.teardown_warnings.inc_by(deleted.warnings as u64);
        }
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

/// What a successful DeleteContainer tells the metrics layer, in the response's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Deleted {
    /// "stopped", "created" or "forced".
    pub path: &'static str,
    pub warnings: usize,
}

/// Counts every ContainerService call by method and code, with delete latencies.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Counted<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .strip_prefix(SERVICE_PREFIX)
            .map(str::to_owned);
        let began = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            if let Some(method) = method {
                global().answered(&method, &response, began.elapsed().as_secs_f64());
            }
            Ok(response)
        })
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
                let statuses = registry
                    .list(&Selector::default())
                    .await
                    .into_iter()
                    .map(|s| s.status);
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
