//! Lets stock gRPC clients use the Unix socket. python grpcio (>= 1.57) and grpc-java send
//! the socket path, percent-encoded, as the HTTP/2 `:authority`; h2, under tonic, refuses
//! such a value and resets the stream. This wraps each Unix connection and rewrites the
//! headers the client sends: every header block is decoded (with the client's HPACK dynamic
//! table), an `:authority` that is not a valid authority becomes `localhost`, and the block
//! is encoded again for the server, split to the HTTP/2 frame size. Nothing else in the
//! byte stream changes, and TCP connections are not wrapped.
//!
//! Whether a connection needs this is told by its first header block. When that one has no
//! `:authority` to rewrite (berth's CLI, tonic, grpc-go, grpcurl), it goes to the server as
//! the client encoded it, and so do all later ones, like any other frame. A client that
//! needs the rewrite has every block of its connection decoded and encoded again.
//!
//! This runs before any authorisation, for every peer that can open the socket, so what it
//! holds is bounded: only header blocks (HEADERS and CONTINUATION) are collected, up to
//! [`MAX_BLOCK`] encoded and [`MAX_HEADER_LIST`] decoded; every other frame goes to the
//! server as it arrives (its header first, then its payload in the pieces the socket
//! yields); and a frame longer than the frame size the server advertised closes the
//! connection as soon as its 9-byte header is read. Once header blocks go through as sent
//! they are not held either, and a first block that is not decoded here (see
//! `plainly_valid`) has its decoded size bounded by h2 alone.
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

/// What becomes of the client's header blocks: its first decides (see
/// [`AuthorityFix::finish_block`]).
#[derive(PartialEq)]
enum Blocks {
    /// None has been completed yet.
    Undecided,
    /// Each is decoded and encoded again.
    Rewritten,
    /// Each goes through as sent, like any other frame.
    PassedOn,
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
    blocks: Blocks,
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
            blocks: Blocks::Undecided,
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
        if (kind == HEADERS || kind == CONTINUATION) && self.blocks != Blocks::PassedOn {
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
        // The bytes sent on decide whose HPACK dynamic table the server's decoder keeps.
        // Up to the first rewrite the server has seen only the client's own encoding, so
        // its table is the client's; sending a block as it came keeps it the client's, and
        // from there on every block of the client's can go to the server as it is. After
        // one block encoded again, the server's table is this encoder's, which the client's
        // later blocks know nothing of (they may name entries it lacks, or holds at other
        // indices), so every later block is encoded again too. The choice is made once, at
        // the first block: going back to rewriting after passing bytes through would need
        // this encoder to take over the client's table, which it cannot. The clients that
        // need the rewrite send the same `:authority` on every request; one that sent a
        // valid one first and an invalid one later has that stream reset by h2, as it
        // would without this wrapper.
        if self.blocks == Blocks::Undecided && plainly_valid(&block.fragment) {
            self.blocks = Blocks::PassedOn;
            self.send_block(&block, &block.fragment);
            return Ok(());
        }
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
        let mut rewrote = false;
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" && !valid_authority(false, value) {
                *value = b"localhost".to_vec();
                rewrote = true;
            }
        }
        if self.blocks == Blocks::Rewritten || rewrote {
            self.blocks = Blocks::Rewritten;
            let encoded = self.encoder.encode(
                headers
                    .iter()
                    .map(|(name, value)| (name.as_slice(), value.as_slice())),
            );
            self.send_block(&block, &encoded);
        } else {
            self.blocks = Blocks::PassedOn;
            self.send_block(&block, &block.fragment);
        }
        Ok(())
    }

    /// Sends a header block on as HEADERS (with the priority, if any), then CONTINUATION
    /// frames, each within the frame size; END_HEADERS on the last.
    fn send_block(&mut self, block: &Block, mut rest: &[u8]) {
        let mut first = true;
        loop {
            let priority = block.priority.filter(|_| first);
            let prefix: &[u8] = priority.as_ref().map_or(&[], |p| p);
            let (piece, after) = rest.split_at(rest.len().min(self.max_frame - prefix.len()));
            let mut flags = if after.is_empty() { END_HEADERS } else { 0 };
            if first && block.end_stream {
                flags |= END_STREAM;
            }
            if priority.is_some() {
                flags |= PRIORITY;
            }
            let kind = if first { HEADERS } else { CONTINUATION };
            let length = ((prefix.len() + piece.len()) as u32).to_be_bytes();
            self.ready
                .extend_from_slice(&[length[1], length[2], length[3], kind, flags]);
            self.ready.extend_from_slice(&block.stream.to_be_bytes());
            self.ready.extend_from_slice(prefix);
            self.ready.extend_from_slice(piece);
            rest = after;
            first = false;
            if rest.is_empty() {
                return;
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

/// `:authority` in Huffman code (RFC 7541, appendix B). The code is prefix-free and its
/// padding fixed, so no other valid Huffman string decodes to the name.
const AUTHORITY_HUFFMAN: &[u8] = &[0xb8, 0x3b, 0x53, 0x39, 0xec, 0x32, 0x7d, 0x7f];

/// Whether a connection's first header block surely has no `:authority` to rewrite, told
/// by walking it rather than decoding it: decoding every string is most of what the
/// wrapper would cost a client that needs no rewrite. Every `:authority` must be named
/// through the static table or spelled out, with a valid value. Anything else (a reference
/// into the dynamic table, a table size update, a malformed block) answers false, and the
/// full decode decides.
fn plainly_valid(mut block: &[u8]) -> bool {
    while let Some(&first) = block.first() {
        let name_prefix = match first {
            // Indexed: static entry 1 is `:authority` with an empty value.
            0x80..=0xff => match integer(&mut block, 7) {
                Some(2..=61) => continue,
                _ => return false,
            },
            0x40..=0x7f => 6,
            0x20..=0x3f => return false,
            _ => 4,
        };
        let authority = match integer(&mut block, name_prefix) {
            Some(0) => match string(&mut block) {
                Some((true, name)) => name == AUTHORITY_HUFFMAN,
                Some((false, name)) => name == b":authority",
                None => return false,
            },
            Some(1) => true,
            Some(2..=61) => false,
            _ => return false,
        };
        match string(&mut block) {
            Some((huffman, value)) if !authority || valid_authority(huffman, value) => {}
            _ => return false,
        }
    }
    true
}

/// An HPACK integer (RFC 7541, 5.1) with a `prefix`-bit prefix, taken off the front of
/// `bytes`; None if cut short or past what a bounded block can hold.
fn integer(bytes: &mut &[u8], prefix: u32) -> Option<usize> {
    let (&first, mut rest) = bytes.split_first()?;
    let max = (1usize << prefix) - 1;
    let mut value = first as usize & max;
    if value == max {
        for shift in [0, 7, 14, 21] {
            let (&byte, after) = rest.split_first()?;
            rest = after;
            value += (byte as usize & 0x7f) << shift;
            if byte & 0x80 == 0 {
                *bytes = rest;
                return Some(value);
            }
        }
        return None;
    }
    *bytes = rest;
    Some(value)
}

/// An HPACK string literal taken off the front of `bytes`: whether it is Huffman-coded,
/// and its octets as sent.
fn string<'a>(bytes: &mut &'a [u8]) -> Option<(bool, &'a [u8])> {
    let huffman = bytes.first()? & 0x80 != 0;
    let length = integer(bytes, 7)?;
    let string = bytes.get(..length)?;
    *bytes = &bytes[length..];
    Some((huffman, string))
}

thread_local! {
    // loona builds its Huffman decoder's tables anew each time, which costs far more than
    // decoding one short value; one per thread is built once.
    static HUFFMAN: std::cell::RefCell<loona_hpack::huffman::HuffmanDecoder> =
        std::cell::RefCell::new(loona_hpack::huffman::HuffmanDecoder::new());
}

fn valid_authority(huffman: bool, value: &[u8]) -> bool {
    use tonic::codegen::http::uri::Authority;
    if huffman {
        HUFFMAN.with_borrow_mut(|decoder| {
            decoder
                .decode(value)
                .is_ok_and(|value| Authority::try_from(value.as_slice()).is_ok())
        })
    } else {
        Authority::try_from(value).is_ok()
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
            // bytes, plus at most one header block.
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

    /// The header block of `berth list` as tonic 0.14 sent it on a new connection.
    const TONIC_BLOCK: &[u8] = &[
        0x83, 0x86, 0x41, 0x84, 0x49, 0xea, 0x31, 0x3f, 0x04, 0x9d, 0x62, 0x32, 0xd8, 0x99, 0xd7,
        0xee, 0x15, 0xef, 0x1e, 0xa4, 0x8c, 0xd5, 0x16, 0xcd, 0xc5, 0xb3, 0xb9, 0x88, 0x56, 0x33,
        0x99, 0x09, 0xbc, 0x7a, 0x92, 0x33, 0x54, 0x5b, 0x11, 0x40, 0x82, 0x49, 0x7f, 0x86, 0x4d,
        0x83, 0x35, 0x05, 0xb1, 0x1f, 0x5f, 0x8b, 0x1d, 0x75, 0xd0, 0x62, 0x0d, 0x26, 0x3d, 0x4c,
        0x4d, 0x65, 0x64, 0x7a, 0x89, 0x49, 0xea, 0x31, 0x18, 0x02, 0xe1, 0x69, 0x77, 0xff,
    ];

    #[tokio::test]
    async fn a_connection_whose_first_block_needs_no_rewrite_is_passed_through_as_sent() {
        // After it, even a block with an invalid `:authority` goes to h2 untouched.
        let later =
            loona_hpack::Encoder::new().encode([(b":authority" as &[u8], b"%2Fs" as &[u8])]);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, TONIC_BLOCK));
        bytes.extend(frame(DATA, END_STREAM, 1, b"body"));
        bytes.extend(frame(HEADERS, END_HEADERS, 3, &later));
        let mut fixed = AuthorityFix::new(bytes.as_slice());
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, bytes);
        assert!(fixed.blocks == Blocks::PassedOn);
        let headers = loona_hpack::Decoder::new().decode(TONIC_BLOCK).unwrap();
        assert_eq!(headers[2], (b":authority".to_vec(), b"tonic".to_vec()));
    }

    #[tokio::test]
    async fn once_a_block_is_rewritten_every_later_one_is_encoded_again() {
        let mut client = loona_hpack::Encoder::new();
        let mut bytes = PREFACE.to_vec();
        for (stream, authority) in [(1, b"%2Fs" as &[u8]), (3, b"example:80")] {
            let block = client.encode([
                (b":authority" as &[u8], authority),
                (b"x-request", b"the same each time"),
            ]);
            bytes.extend(frame(HEADERS, END_HEADERS, stream, &block));
        }
        let mut fixed = AuthorityFix::new(bytes.as_slice());
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        assert!(fixed.blocks == Blocks::Rewritten);
        let mut server = loona_hpack::Decoder::new();
        let frames = frames(&out[PREFACE_LEN..]);
        let first = server.decode(&frames[0].2).unwrap();
        assert_eq!(first[0], (b":authority".to_vec(), b"localhost".to_vec()));
        let second = server.decode(&frames[1].2).unwrap();
        assert_eq!(second[0], (b":authority".to_vec(), b"example:80".to_vec()));
        assert_eq!(
            second[1],
            (b"x-request".to_vec(), b"the same each time".to_vec())
        );
    }

    #[test]
    fn the_walk_passes_only_blocks_whose_authority_is_surely_valid() {
        let huffman_name = [&[0x40, 0x80 | 8][..], AUTHORITY_HUFFMAN].concat();
        let encode = |headers: &[(&[u8], &[u8])]| {
            loona_hpack::Encoder::new().encode(headers.iter().copied())
        };
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (TONIC_BLOCK.to_vec(), true),
            (
                encode(&[(b":method", b"POST"), (b":authority", b"localhost:80")]),
                true,
            ),
            (encode(&[(b"x-any", b"no authority at all")]), true),
            (
                encode(&[(b":authority", b"%2Frun%2Fberth%2Fberth.sock")]),
                false,
            ),
            // A literal name, Huffman-coded, with "tonic" Huffman-coded, then with "%2Fs".
            (
                [&huffman_name[..], &[0x84, 0x49, 0xea, 0x31, 0x3f]].concat(),
                true,
            ),
            ([&huffman_name[..], &[0x04], b"%2Fs"].concat(), false),
            // `:authority` with an empty value, from the static table.
            (vec![0x81], false),
            // The dynamic table: a field inserted, then named by its index.
            ([TONIC_BLOCK, &[0x80 | 62]].concat(), false),
            // A table size update, and a block cut short.
            (vec![0x20, 0x82], false),
            (TONIC_BLOCK[..TONIC_BLOCK.len() - 1].to_vec(), false),
            (vec![0x40, 0xff], false),
        ];
        for (block, passes) in cases {
            assert_eq!(plainly_valid(&block), passes, "{block:x?}");
            // Whatever the walk passes, the full decode leaves as it is.
            if passes {
                let headers = loona_hpack::Decoder::new().decode(&block).unwrap();
                assert!(headers
                    .iter()
                    .all(|(name, value)| name != b":authority" || valid_authority(false, value)));
            }
        }
        let name = loona_hpack::huffman::HuffmanDecoder::new().decode(AUTHORITY_HUFFMAN);
        assert_eq!(name.unwrap(), b":authority");
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
