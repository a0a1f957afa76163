//! `--rpc-timeout`: a bound on every call but the waits. WaitContainer and WaitProcess
//! return when a process exits, which may be days away (a Kubernetes Job); cutting them
//! off would only make clients call again. A client's own `grpc-timeout` still applies to
//! every call (tonic honours it).
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tonic::codegen::http;

/// The methods that wait for an exit, exempt from the bound.
const WAITS: [&str; 2] = [
    "/berth.v1.ContainerService/WaitContainer",
    "/berth.v1.ContainerService/WaitProcess",
];

#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer(pub Duration);

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for Deadline<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
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
        let bounded = !WAITS.contains(&request.uri().path());
        let limit = self.limit;
        let call = self.inner.call(request);
        Box::pin(async move {
            if !bounded {
                return call.await;
            }
            match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                // What tonic's own timeout answers.
                Err(_) => Ok(tonic::Status::cancelled(format!(
                    "Timeout expired: the call took longer than berthd's --rpc-timeout of {}",
                    humantime::format_duration(limit)
                ))
                .into_http()),
            }
        })
    }
}
