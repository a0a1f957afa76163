//! Lets stock gRPC clients use the Unix socket. python grpcio (>= 1.57) and grpc-java send
//! the socket path, percent-encoded, as the HTTP/2 `:authority`; h2, under tonic, refuses
//! such a value and resets the stream. This wraps each Unix connection and rewrites the
//! headers the client sends: every header block is decoded (with the client's HPACK dynamic
//! table), an `:authority` that is not a valid authority becomes `localhost`, and the block
//! is encoded again for the server, split to the HTTP/2 frame size. Nothing else in the
//! byte stream changes, and TCP connections are not wrapped.
//!
//! This runs before any authorisation, for every peer that can open the socket, so what it
//! holds is bounded: only header blocks (HEADERS and CONTINUATION) are collected, up to
//! [`MAX_BLOCK`] encoded and [`MAX_HEADER_LIST`] decoded; every other frame goes to the
//! server as it arrives (its header first, then its payload in the pieces the socket
//! yields); and a frame longer than the frame size the server advertised closes the
//! connection as soon as its 9-byte header is read.
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, UdsConnectInfo};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload berthd's server accepts: RFC 9113's default, which serve.rs
/// advertises explicitly (SETTINGS_MAX_FRAME_SIZE) so the two cannot drift apart. A client
/// learns no larger size, so a longer frame is a FRAME_SIZE_ERROR that h2 would answer by
/// closing the connection anyway; the wrapper closes it before reading the payload.
pub const MAX_FRAME_SIZE: u32 = 16_384;
/// Bounds on one header block, whole (HEADERS plus its CONTINUATIONs), encoded as received
/// and decoded. hyper advertises a SETTINGS_MAX_HEADER_LIST_SIZE of 16 KiB and h2 closes
/// the connection (ENHANCE_YOUR_CALM) once a decoded list passes 4 times that, 64 KiB.
/// The same 64 KiB here refuses nothing h2 would let through, still hands blocks between
/// 16 and 64 KiB on to h2 so it answers them as it always has (431 / REFUSED_STREAM on that
/// stream alone), and caps what an unauthorised peer can make berthd hold per connection.
/// An encoded block is at most about as long as its decoded list (each field counts 32
/// octets more there); the decoded bound stops HPACK amplification: one byte naming a
/// 4 KiB dynamic-table entry, repeated.
const MAX_BLOCK: usize = 64 * 1024;
const MAX_HEADER_LIST: usize = 64 * 1024;
/// How much is read from the socket at a time.
const CHUNK: usize = 8192;

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// Where the wrapper is in the client's byte stream.
enum State {
    /// In the connection preface, this many bytes of it seen (passed through as they come).
    Preface(usize),
    /// Collecting a frame header, this many bytes of it seen.
    Header(usize),
    /// Collecting the payload of a HEADERS or CONTINUATION frame of this length.
    Collect(usize),
    /// Passing through the payload of any other frame, this many bytes still to come.
    Pass(usize),
}

pub struct AuthorityFix<S> {
    inner: S,
    /// Bytes ready for the server.
    ready: Vec<u8>,
    state: State,
    /// The frame header being read, or of the frame being collected.
    head: [u8; FRAME_HEADER_LEN],
    /// The payload of the HEADERS or CONTINUATION frame being collected.
    payload: Vec<u8>,
    block: Option<Block>,
    max_frame: usize,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    /// Who is on the other end, for the log line when the connection is closed.
    peer_uid: Option<u32>,
    /// The client broke the rules: nothing more is read from it.
    failed: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self::with_max_frame(inner, MAX_FRAME_SIZE)
    }

    /// With a server that advertises a maximum frame size other than [`MAX_FRAME_SIZE`].
    pub fn with_max_frame(inner: S, max_frame: u32) -> Self {
        Self {
            inner,
            ready: Vec::new(),
            state: State::Preface(0),
            head: [0; FRAME_HEADER_LEN],
            payload: Vec::new(),
            block: None,
            max_frame: max_frame as usize,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
            peer_uid: None,
            failed: false,
        }
    }

    /// Names the peer in the log line written when its connection is closed.
    pub fn peer_uid(mut self, uid: Option<u32>) -> Self {
        self.peer_uid = uid;
        self
    }

    /// Moves `input` on: through to `ready`, or into the header block being collected.
    fn process(&mut self, mut input: &[u8]) -> io::Result<()> {
        while !input.is_empty() {
            match self.state {
                State::Preface(seen) => {
                    let n = input.len().min(PREFACE_LEN - seen);
                    self.ready.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.state = if seen + n == PREFACE_LEN {
                        State::Header(0)
                    } else {
                        State::Preface(seen + n)
                    };
                }
                State::Header(seen) => {
                    let n = input.len().min(FRAME_HEADER_LEN - seen);
                    self.head[seen..seen + n].copy_from_slice(&input[..n]);
                    input = &input[n..];
                    self.state = State::Header(seen + n);
                    if seen + n == FRAME_HEADER_LEN {
                        self.start_frame()?;
                    }
                }
                State::Collect(length) => {
                    let n = input.len().min(length - self.payload.len());
                    self.payload.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if self.payload.len() == length {
                        self.finish_frame()?;
                    }
                }
                State::Pass(remaining) => {
                    let n = input.len().min(remaining);
                    self.ready.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.state = if n == remaining {
                        State::Header(0)
                    } else {
                        State::Pass(remaining - n)
                    };
                }
            }
        }
        Ok(())
    }

    /// A frame header is complete: decides what happens to the payload.
    fn start_frame(&mut self) -> io::Result<()> {
        let head = self.head;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let kind = head[3];
        if length > self.max_frame {
            return Err(malformed(&format!(
                "a frame of type {kind:#x} declares {length} bytes, over the maximum frame size of {}",
                self.max_frame
            )));
        }
        if let Some(block) = &self.block {
            // RFC 9113, 6.10: a header block is followed only by its own CONTINUATIONs.
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            if kind != CONTINUATION || stream != block.stream {
                return Err(malformed(&format!(
                    "a frame of type {kind:#x} on stream {stream} inside the header block of stream {}",
                    block.stream
                )));
            }
        }
        if kind == HEADERS || kind == CONTINUATION {
            self.payload.clear();
            self.state = State::Collect(length);
            if length == 0 {
                self.finish_frame()?;
            }
        } else {
            self.ready.extend_from_slice(&head);
            self.state = State::Pass(length);
            if length == 0 {
                self.state = State::Header(0);
            }
        }
        Ok(())
    }

    /// A HEADERS or CONTINUATION frame is complete (in `head` and `payload`).
    fn finish_frame(&mut self) -> io::Result<()> {
        self.state = State::Header(0);
        let (kind, flags) = (self.head[3], self.head[4]);
        let stream = u32::from_be_bytes([self.head[5], self.head[6], self.head[7], self.head[8]])
            & 0x7fff_ffff;
        let payload = std::mem::take(&mut self.payload);
        if kind == HEADERS {
            let mut body = payload.as_slice();
            let mut padding = 0;
            if flags & PADDED != 0 {
                padding = *body
                    .first()
                    .ok_or_else(|| malformed("empty padded HEADERS"))?
                    as usize;
                body = &body[1..];
            }
            let priority = if flags & PRIORITY != 0 {
                let bytes: [u8; 5] = body
                    .get(..5)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| malformed("short priority"))?;
                body = &body[5..];
                Some(bytes)
            } else {
                None
            };
            let fragment = body
                .len()
                .checked_sub(padding)
                .map(|end| &body[..end])
                .ok_or_else(|| malformed("padding too long"))?;
            self.block = Some(Block {
                stream,
                end_stream: flags & END_STREAM != 0,
                priority,
                fragment: fragment.to_vec(),
            });
        } else {
            let block = self
                .block
                .as_mut()
                .ok_or_else(|| malformed("CONTINUATION without HEADERS"))?;
            if block.fragment.len() + payload.len() > MAX_BLOCK {
                return Err(malformed(&format!("a header block over {MAX_BLOCK} bytes")));
            }
            block.fragment.extend_from_slice(&payload);
        }
        // The payload's buffer is kept for the next frame.
        self.payload = payload;
        self.payload.clear();
        if flags & END_HEADERS != 0 {
            self.finish_block()?;
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let block = self.block.take().expect("a block is being collected");
        // Decoded with a running total (RFC 9113's header list size: name, value and 32
        // octets per field); past the bound the rest is decoded, to keep the HPACK state,
        // but not kept.
        let mut headers = Vec::new();
        let mut list_size = 0usize;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if list_size <= MAX_HEADER_LIST {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| malformed(&format!("HPACK: {e:?}")))?;
        if list_size > MAX_HEADER_LIST {
            return Err(malformed(&format!(
                "a header list of {list_size} bytes decoded, over {MAX_HEADER_LIST}"
            )));
        }
        for (name, value) in headers.iter_mut() {
            let valid = tonic::codegen::http::uri::Authority::try_from(value.as_slice()).is_ok();
            if name.as_slice() == b":authority" && !valid {
                *value = b"localhost".to_vec();
            }
        }
        let encoded = self.encoder.encode(
            headers
                .iter()
                .map(|(name, value)| (name.as_slice(), value.as_slice())),
        );
        // HEADERS first (with the priority, if any), then CONTINUATION frames, each within
        // the frame size; END_HEADERS on the last.
        let mut rest: &[u8] = &encoded;
        let mut first = true;
        loop {
            let room = self.max_frame
                - if first && block.priority.is_some() {
                    5
                } else {
                    0
                };
            let (piece, after) = rest.split_at(rest.len().min(room));
            let mut flags = if after.is_empty() { END_HEADERS } else { 0 };
            let kind = if first { HEADERS } else { CONTINUATION };
            let mut payload = Vec::with_capacity(piece.len() + 5);
            if first {
                if block.end_stream {
                    flags |= END_STREAM;
                }
                if let Some(priority) = block.priority {
                    flags |= PRIORITY;
                    payload.extend_from_slice(&priority);
                }
            }
            payload.extend_from_slice(piece);
            let length = (payload.len() as u32).to_be_bytes();
            self.ready
                .extend_from_slice(&[length[1], length[2], length[3], kind, flags]);
            self.ready.extend_from_slice(&block.stream.to_be_bytes());
            self.ready.extend_from_slice(&payload);
            rest = after;
            first = false;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// What the wrapper holds for this connection, at its largest so far (a Vec's capacity
    /// does not shrink).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.ready.capacity()
            + self.payload.capacity()
            + self.block.as_ref().map_or(0, |b| b.fragment.capacity())
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from the client: {what}"),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.failed {
                return Poll::Ready(Err(malformed("the connection was closed")));
            }
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            // Only once `ready` is empty: it never holds more than one chunk of passed-through
            // bytes, plus at most one rewritten header block.
            let mut chunk = [0u8; CHUNK];
            let mut raw = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if raw.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    if let Err(e) = this.process(raw.filled()) {
                        tracing::warn!(
                            peer_uid = this.peer_uid,
                            error = %e,
                            "closing a Unix-socket connection: the client broke HTTP/2's rules"
                        );
                        this.failed = true;
                        this.ready = Vec::new();
                        this.payload = Vec::new();
                        this.block = None;
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    const MAX_FRAME: usize = MAX_FRAME_SIZE as usize;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;

    /// A client that sends `prefix`, then `body` patterned bytes, `chunk` bytes per read;
    /// it counts what it has handed out.
    struct Client {
        prefix: Vec<u8>,
        body: usize,
        chunk: usize,
        sent: usize,
    }

    impl Client {
        fn byte(at: usize) -> u8 {
            (at % 251) as u8
        }
    }

    impl AsyncRead for Client {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = &mut *self;
            let total = this.prefix.len() + this.body;
            let n = this.chunk.min(buf.remaining()).min(total - this.sent);
            for at in this.sent..this.sent + n {
                match this.prefix.get(at) {
                    Some(&b) => buf.put_slice(&[b]),
                    None => buf.put_slice(&[Client::byte(at - this.prefix.len())]),
                }
            }
            this.sent += n;
            Poll::Ready(Ok(()))
        }
    }

    /// A frame header alone, declaring `length` bytes.
    fn frame_head(kind: u8, flags: u8, stream: u32, length: usize) -> Vec<u8> {
        let mut head = frame(kind, flags, stream, &[]);
        head[..3].copy_from_slice(&(length as u32).to_be_bytes()[1..]);
        head
    }

    #[tokio::test]
    async fn a_data_frame_over_the_frame_size_closes_the_connection_without_being_buffered() {
        let mut prefix = PREFACE.to_vec();
        prefix.extend(frame(SETTINGS, 0, 0, &[]));
        prefix.extend(frame_head(DATA, 0, 1, 0xFF_FFFF));
        let client = Client {
            prefix,
            body: 0xFF_FFFF,
            chunk: 4096,
            sent: 0,
        };
        let mut fixed = AuthorityFix::new(client);
        let mut out = Vec::new();
        let error = fixed.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error
                .to_string()
                .contains("16777215 bytes, over the maximum frame size of 16384"),
            "{error}"
        );
        // Refused at its header: no more than the first read was taken from the client.
        assert!(fixed.inner.sent <= 4096, "{} bytes read", fixed.inner.sent);
        assert!(fixed.held() <= 4096, "{} bytes held", fixed.held());
        // And nothing more is read after.
        assert!(fixed.read_to_end(&mut out).await.is_err());
        assert!(fixed.inner.sent <= 4096);

        // One byte over the limit is refused as well; exactly the limit passes.
        for (length, passes) in [(MAX_FRAME + 1, false), (MAX_FRAME, true)] {
            let mut bytes = PREFACE.to_vec();
            bytes.extend(frame(DATA, 0, 1, &vec![7; length]));
            let mut out = Vec::new();
            let read = AuthorityFix::new(bytes.as_slice())
                .read_to_end(&mut out)
                .await;
            assert_eq!(read.is_ok(), passes, "{length}: {read:?}");
            if passes {
                assert_eq!(out, bytes);
            }
        }
    }

    #[tokio::test]
    async fn a_large_data_frame_within_the_limit_is_streamed_through_in_chunks() {
        // A server that advertised the largest frame size HTTP/2 allows, and a client that
        // sends a DATA frame of that size, then a PING.
        let length = 0xFF_FFFF;
        let mut prefix = PREFACE.to_vec();
        prefix.extend(frame_head(DATA, END_STREAM, 1, length));
        let ping = frame(PING, 0, 0, b"12345678");
        let client = Client {
            prefix: prefix.clone(),
            body: length,
            chunk: CHUNK,
            sent: 0,
        };
        let mut fixed = AuthorityFix::with_max_frame(client, length as u32);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut first_payload_at = None;
        loop {
            let n = fixed.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if first_payload_at.is_none() && out.len() > prefix.len() {
                first_payload_at = Some(fixed.inner.sent);
            }
            assert!(fixed.held() <= CHUNK, "{} bytes held", fixed.held());
        }
        // The payload reached the server while the client was still sending it.
        assert!(
            first_payload_at.unwrap() <= 2 * CHUNK,
            "{first_payload_at:?}"
        );
        assert_eq!(out.len(), prefix.len() + length);
        assert_eq!(out[..prefix.len()], prefix[..]);
        assert!(out[prefix.len()..]
            .iter()
            .enumerate()
            .all(|(at, &b)| b == Client::byte(at)));

        // A frame after a streamed one is parsed again: a PING, then a HEADERS rewritten.
        let mut client = loona_hpack::Encoder::new();
        let block = client.encode([(b":authority" as &[u8], b"%2Fsock" as &[u8])]);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(DATA, 0, 1, &vec![9; MAX_FRAME]));
        bytes.extend(&ping);
        bytes.extend(frame(HEADERS, END_HEADERS, 3, &block));
        let out = through_fix(bytes).await;
        let frames = frames(&out[PREFACE_LEN..]);
        assert_eq!(frames[0], (DATA, 0, vec![9; MAX_FRAME]));
        assert_eq!(frames[1], (PING, 0, b"12345678".to_vec()));
        let headers = loona_hpack::Decoder::new().decode(&frames[2].2).unwrap();
        assert_eq!(headers, [(b":authority".to_vec(), b"localhost".to_vec())]);
    }

    #[tokio::test]
    async fn headers_and_continuations_are_still_rewritten_a_byte_at_a_time() {
        let mut client = loona_hpack::Encoder::new();
        let socket_path = b"%2Frun%2Fberth%2Fberth.sock" as &[u8];
        let block = client.encode([
            (b":method" as &[u8], b"POST" as &[u8]),
            (b":path", b"/berth.v1.ContainerService/ListContainers"),
            (b":authority", socket_path),
            (b"te", b"trailers"),
        ]);
        let (head, rest) = block.split_at(4);
        let (middle, tail) = rest.split_at(rest.len() / 2);
        let mut prefix = PREFACE.to_vec();
        prefix.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
        prefix.extend(frame(HEADERS, 0, 1, head));
        prefix.extend(frame(CONTINUATION, 0, 1, &[]));
        prefix.extend(frame(CONTINUATION, 0, 1, middle));
        prefix.extend(frame(CONTINUATION, END_HEADERS, 1, tail));
        prefix.extend(frame(DATA, END_STREAM, 1, b"body"));
        let client = Client {
            body: 0,
            chunk: 1,
            sent: 0,
            prefix,
        };
        let mut fixed = AuthorityFix::new(client);
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        let frames = frames(&out[PREFACE_LEN..]);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], (SETTINGS, 0, vec![0, 4, 0, 0, 0xff, 0xff]));
        assert_eq!((frames[1].0, frames[1].1), (HEADERS, END_HEADERS));
        let headers = loona_hpack::Decoder::new().decode(&frames[1].2).unwrap();
        assert_eq!(headers[2], (b":authority".to_vec(), b"localhost".to_vec()));
        assert_eq!(headers.len(), 4);
        assert_eq!(frames[2], (DATA, END_STREAM, b"body".to_vec()));
    }

    #[tokio::test]
    async fn a_header_block_past_its_bounds_closes_the_connection() {
        async fn refused(bytes: Vec<u8>) -> String {
            let mut out = Vec::new();
            let error = AuthorityFix::new(bytes.as_slice())
                .read_to_end(&mut out)
                .await
                .unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            error.to_string()
        }
        // Too long as received: HEADERS and CONTINUATIONs, each within the frame size.
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(HEADERS, 0, 1, &[0; MAX_FRAME]));
        for _ in 0..4 {
            bytes.extend(frame(CONTINUATION, 0, 1, &[0; MAX_FRAME]));
        }
        let error = refused(bytes).await;
        assert!(error.contains("header block over 65536 bytes"), "{error}");

        // Short as received, too long decoded: one 4000-byte field in the dynamic table,
        // then 20 one-byte references to it.
        // (Literal with incremental indexing, new name; 4000 as an HPACK integer with a
        // 7-bit prefix is 127, then 3873 in 7-bit groups, least significant first.)
        let mut block = vec![0x40, 5];
        block.extend_from_slice(b"x-big");
        block.extend_from_slice(&[0x7f, 0x80 | (3873 % 128) as u8, (3873 / 128) as u8]);
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.extend(std::iter::repeat_n(0x80 | 62, 20));
        assert!(block.len() < MAX_FRAME);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let error = refused(bytes).await;
        assert!(error.contains("header list of"), "{error}");

        // Anything but its own CONTINUATION inside a header block.
        for (kind, stream) in [(DATA, 1), (CONTINUATION, 3)] {
            let mut bytes = PREFACE.to_vec();
            bytes.extend(frame(HEADERS, 0, 1, &[0x82]));
            bytes.extend(frame(kind, END_HEADERS, stream, &[0x86]));
            let error = refused(bytes).await;
            assert!(
                error.contains("inside the header block of stream 1"),
                "{error}"
            );
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// Splits what the server would read back into frames.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            out.push((bytes[3], bytes[4], bytes[9..9 + length].to_vec()));
            bytes = &bytes[9 + length..];
        }
        out
    }

    async fn through_fix(client_bytes: Vec<u8>) -> Vec<u8> {
        let mut fixed = AuthorityFix::new(client_bytes.as_slice());
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn an_invalid_authority_becomes_localhost_and_the_rest_is_untouched() {
        let mut client = loona_hpack::Encoder::new();
        let socket_path = b"%2Frun%2Fberth%2Fberth.sock%20x" as &[u8];
        let block = client.encode([
            (b":method" as &[u8], b"POST" as &[u8]),
            (b":authority", socket_path),
            (b"te", b"trailers"),
        ]);
        // A padded HEADERS frame whose block continues in a CONTINUATION frame, then DATA.
        let (head, tail) = block.split_at(5);
        let mut padded = vec![3u8];
        padded.extend_from_slice(head);
        padded.extend_from_slice(&[0, 0, 0]);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(HEADERS, PADDED, 1, &padded));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, tail));
        bytes.extend(frame(0x0, END_STREAM, 1, b"grpc body"));

        let out = through_fix(bytes).await;
        assert_eq!(&out[..PREFACE_LEN], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let frames = frames(&out[PREFACE_LEN..]);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].0, frames[0].1), (HEADERS, END_HEADERS));
        let headers = loona_hpack::Decoder::new().decode(&frames[0].2).unwrap();
        assert_eq!(
            headers,
            [
                (b":method".to_vec(), b"POST".to_vec()),
                (b":authority".to_vec(), b"localhost".to_vec()),
                (b"te".to_vec(), b"trailers".to_vec())
            ]
        );
        assert_eq!(frames[1], (0x0, END_STREAM, b"grpc body".to_vec()));
    }

    #[tokio::test]
    async fn a_valid_authority_stays_and_a_large_block_is_split_to_the_frame_size() {
        let mut client = loona_hpack::Encoder::new();
        let big = vec![b'v'; 40_000];
        let block = client.encode([
            (b":authority" as &[u8], b"example:80" as &[u8]),
            (b"x-big", big.as_slice()),
        ]);
        // The client splits it to the frame size too: HEADERS, then CONTINUATIONs.
        let payload = [[0u8, 0, 0, 0, 16].as_slice(), &block].concat();
        let mut pieces = payload.chunks(MAX_FRAME);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(
            HEADERS,
            END_STREAM | PRIORITY,
            3,
            pieces.next().unwrap(),
        ));
        let mut pieces = pieces.peekable();
        while let Some(piece) = pieces.next() {
            let flags = if pieces.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            bytes.extend(frame(CONTINUATION, flags, 3, piece));
        }
        let out = through_fix(bytes).await;
        let frames = frames(&out[PREFACE_LEN..]);
        assert!(frames.len() >= 3, "{} frames", frames.len());
        assert!(frames
            .iter()
            .all(|(_, _, payload)| payload.len() <= MAX_FRAME));
        assert_eq!(frames[0].1, END_STREAM | PRIORITY);
        assert!(frames[1..].iter().all(|(kind, _, _)| *kind == CONTINUATION));
        assert_eq!(frames.last().unwrap().1, END_HEADERS);
        let mut joined = frames[0].2[5..].to_vec();
        for (_, _, payload) in &frames[1..] {
            joined.extend_from_slice(payload);
        }
        let headers = loona_hpack::Decoder::new().decode(&joined).unwrap();
        assert_eq!(headers[0], (b":authority".to_vec(), b"example:80".to_vec()));
        assert_eq!(headers[1].1.len(), 40_000);
    }
}
