//! Who may call: every request on the Unix socket is checked against the caller's
//! credentials (SO_PEERCRED, which tonic attaches to each request). Root may always call;
//! other users only when their uid or one of their groups is listed. Health checks may be
//! opened to everyone. A refusal is PERMISSION_DENIED and an audit line.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{
    codegen::http,
    transport::server::{TcpConnectInfo, UdsConnectInfo},
};

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub allow_uids: Vec<u32>,
    pub allow_gids: Vec<u32>,
    pub health_open: bool,
}

/// The caller as the kernel reports it.
#[derive(Debug)]
struct Peer {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
}

impl Policy {
    fn allows(&self, peer: &Peer, rpc: &str) -> bool {
        peer.uid == 0
            || (self.health_open && rpc.starts_with(HEALTH_PREFIX))
            || self.allow_uids.contains(&peer.uid)
            || self.allow_gids.contains(&peer.gid)
            || self.in_allowed_group(peer)
    }

    /// Supplementary groups are not in SO_PEERCRED; they are read from the caller's
    /// /proc entry (still the caller's while its connection is open).
    fn in_allowed_group(&self, peer: &Peer) -> bool {
        if self.allow_gids.is_empty() {
            return false;
        }
        let Some(pid) = peer.pid else { return false };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("Groups:"))
            .is_some_and(|groups| {
                groups
                    .split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok())
                    .any(|g| self.allow_gids.contains(&g))
            })
    }

    /// `Err` with the refusal for a caller that may not make this request.
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), tonic::Status> {
        let rpc = request.uri().path();
        if let Some(info) = request.extensions().get::<UdsConnectInfo>() {
            let Some(cred) = info.peer_cred else {
                tracing::warn!(target: "berth::audit", rpc, "denied: no peer credentials");
                return Err(tonic::Status::permission_denied(
                    "caller's credentials are unknown",
                ));
            };
            let peer = Peer {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            };
            if self.allows(&peer, rpc) {
                return Ok(());
            }
            tracing::warn!(target: "berth::audit", uid = peer.uid, gid = peer.gid, pid = ?peer.pid, rpc, "denied");
            return Err(tonic::Status::permission_denied(format!(
                "uid {} may not call {rpc}: berthd allows root and the uids and gids given with --allow-uid and --allow-gid",
                peer.uid
            )));
        }
        // TCP is only served with TLS; who gets through the handshake is decided there.
        if request.extensions().get::<TcpConnectInfo>().is_some()
            || request
                .extensions()
                .get::<tonic::transport::server::TlsConnectInfo<TcpConnectInfo>>()
                .is_some()
        {
            return Ok(());
        }
        tracing::warn!(target: "berth::audit", rpc, "denied: unknown transport");
        Err(tonic::Status::permission_denied("unknown transport"))
    }
}

/// The tower layer that applies a `Policy` in front of every service.
#[derive(Clone)]
pub struct AuthzLayer(pub Arc<Policy>);

impl<S> tower::Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            policy: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Authz<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        match self.policy.check(&request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}
