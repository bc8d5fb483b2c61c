//! One HTTP/2 client connection of the load generator, as one state machine in one task.
//!
//! Data flow: `Client::poll` drives three sources in turn until none makes progress: the
//! timer (per-stream deadlines, open-loop send times), the output buffer (every frame the
//! connection sends is appended to `out`, then staged on the socket in one write and sent
//! while the next batch collects), and the input (read into `rbuf`, cut into frames, each
//! handled in place). A response that ends frees its slot, which asks its [`Pace`] whether to
//! send again at once (closed loop: yes, before the batch's write goes out), later (open loop:
//! the timer), or never (the window closed).
//!
//! Per request the hot path is: a HEADERS frame copied from the prebuilt header block, a
//! hash-map insert and remove (stream id to slot), the response's HPACK decode, and the
//! histogram record. Nothing is allocated per request. The request's header block never
//! uses the HPACK dynamic table; the response side's decoder keeps the server's.
//!
//! Failures: anything that breaks the connection's state (a malformed frame, bad HPACK, an
//! unexpected frame, a closed or failing socket) fails every stream in flight and ends the
//! connection (the caller reconnects). A stream the server resets, or answers without a
//! `:status`, fails alone; a stream past its deadline is counted as a timeout and cancelled
//! with RST_STREAM. GOAWAY fails the streams the server says it did not process, lets the
//! others finish, then the connection is replaced.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::frame::{self, flag, kind, setting, Head};
use super::hpack::Decoder;
use crate::io::PollIo;
use crate::load::pace::{Due, Pace};
use crate::load::stats::Failure;
use crate::load::{Flow, WorkerCtx};

/// Receive window advertised per stream.
const STREAM_WINDOW: u32 = 1 << 20;
/// Receive window of the connection.
const CONN_WINDOW: u32 = 1 << 24;
/// The HPACK table size the server's encoder may use (the protocol default; not advertised).
const TABLE_SIZE: usize = 4096;
/// Largest header block (all HEADERS/CONTINUATION fragments) and decoded header list accepted.
const MAX_BLOCK: usize = 256 * 1024;
/// Input buffer: room for several maximum-size frames.
const RBUF: usize = 64 * 1024;
/// Highest client stream id.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;
/// The window every stream starts with until the server's SETTINGS say otherwise.
const DEFAULT_WINDOW: i64 = 65_535;

/// What one stream slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: ask the pace.
    Idle,
    /// Nothing to send before this time (open loop, or before the run starts).
    Waiting(Instant),
    /// Due, waiting for a stream (concurrency limit, or the server's SETTINGS).
    Queued,
    /// Its request is on this stream.
    InFlight(u32),
    /// The run is over for this slot.
    Over,
}

/// One stream slot: its schedule, which outlives connections, and its current exchange.
#[derive(Debug)]
pub struct Slot {
    pace: Pace,
    state: State,
    /// When the current request was intended (latency is measured from here).
    intended: Instant,
    /// When the current request times out.
    deadline: Instant,
    /// The final status once the response's head arrived (0 before).
    status: u16,
    /// Body bytes received.
    bytes: u64,
    /// Bytes received on the stream not yet returned with WINDOW_UPDATE.
    recv_unacked: u32,
    /// The server's window for this stream (request body).
    send_window: i64,
    /// Request body bytes sent.
    body_sent: usize,
}

impl Slot {
    /// A slot that follows `pace`.
    pub fn new(pace: Pace) -> Self {
        let now = Instant::now();
        Self {
            pace,
            state: State::Idle,
            intended: now,
            deadline: now,
            status: 0,
            bytes: 0,
            recv_unacked: 0,
            send_window: 0,
            body_sent: 0,
        }
    }

    /// The slot's pace (for connect-failure accounting).
    pub fn pace_mut(&mut self) -> &mut Pace {
        &mut self.pace
    }
}

/// Stream ids are odd and increasing: multiplying spreads them well enough.
#[derive(Default)]
struct IdHash(u64);

impl Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Timer = Pin<Box<dyn Future<Output = ()>>>;

/// One connection's protocol state and its slots (see the module docs).
pub struct Client<'a> {
    ctx: &'a WorkerCtx,
    /// The request's header block, and its body.
    block: &'a [u8],
    body: &'a [u8],
    slots: Vec<Slot>,
    /// Stream id to slot index, for streams in flight.
    ids: HashMap<u32, usize, BuildHasherDefault<IdHash>>,
    /// Slots due and waiting for a stream, oldest first.
    queue: VecDeque<usize>,
    /// Slots whose request body is not all sent (flow control).
    sending: Vec<usize>,
    hpack: Decoder,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// The server's first SETTINGS arrived (no request goes out before).
    ready: bool,
    max_streams: usize,
    max_frame: usize,
    peer_window: i64,
    conn_send: i64,
    conn_recv_unacked: u32,
    next_id: u32,
    active: usize,
    goaway: bool,
    /// A header block in pieces: (stream, END_STREAM), fragments in `hblock`.
    cont: Option<(u32, bool)>,
    hblock: Vec<u8>,
    timer: Option<Timer>,
    timer_at: Option<Instant>,
    /// Earliest `Waiting` time (a lower bound: may be stale-early, never late).
    earliest_wait: Option<Instant>,
    next_tick: Instant,
    period: Duration,
    born: Instant,
}

impl<'a> Client<'a> {
    /// A client for a fresh connection; `block` and `body` form the request.
    pub fn new(ctx: &'a WorkerCtx, slots: Vec<Slot>, block: &'a [u8], body: &'a [u8]) -> Self {
        let now = Instant::now();
        let period =
            (ctx.shared.timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let mut c = Self {
            ctx,
            block,
            body,
            slots,
            ids: HashMap::default(),
            queue: VecDeque::new(),
            sending: Vec::new(),
            hpack: Decoder::new(TABLE_SIZE, MAX_BLOCK),
            rbuf: vec![0; RBUF],
            rstart: 0,
            rend: 0,
            out: Vec::with_capacity(16 * 1024),
            out_pos: 0,
            ready: false,
            max_streams: usize::MAX,
            max_frame: frame::DEFAULT_MAX_FRAME,
            peer_window: DEFAULT_WINDOW,
            conn_send: DEFAULT_WINDOW,
            conn_recv_unacked: 0,
            next_id: 1,
            active: 0,
            goaway: false,
            cont: None,
            hblock: Vec::new(),
            timer: None,
            timer_at: None,
            earliest_wait: None,
            next_tick: now + period,
            period,
            born: now,
        };
        c.out.extend_from_slice(frame::PREFACE);
        frame::settings(
            &mut c.out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            ],
        );
        frame::window_update(&mut c.out, 0, CONN_WINDOW - DEFAULT_WINDOW as u32);
        for i in 0..c.slots.len() {
            let s = &mut c.slots[i];
            // Requests cut off by the previous connection start over; queued ones stay due.
            if !matches!(s.state, State::Queued | State::Over) {
                s.state = State::Idle;
                c.pace_slot(i, now);
            } else if s.state == State::Queued {
                c.queue.push_back(i);
            }
        }
        c
    }

    /// Runs the connection over `io` until the run is over or the connection is gone.
    pub async fn run(&mut self, mut io: PollIo) -> Flow {
        std::future::poll_fn(|cx| self.poll(cx, &mut io)).await
    }

    /// The slots back, for the next connection.
    pub fn into_slots(self) -> Vec<Slot> {
        self.slots
    }

    fn poll(&mut self, cx: &mut Context<'_>, io: &mut PollIo) -> Poll<Flow> {
        loop {
            let mut progress = false;
            self.arm_timer();
            if let Some(t) = &mut self.timer {
                if t.as_mut().poll(cx).is_ready() {
                    self.timer = None;
                    self.timer_at = None;
                    if let Err(f) = self.on_timer(Instant::now()) {
                        return Poll::Ready(self.conn_failed(f));
                    }
                    progress = true;
                }
            }
            if self.out_pos < self.out.len() {
                match io.poll_write_slice(cx, &self.out[self.out_pos..]) {
                    Poll::Ready(Ok(n)) => {
                        self.out_pos += n;
                        if self.out_pos == self.out.len() {
                            self.out.clear();
                            self.out_pos = 0;
                        }
                        progress |= n > 0;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(self.conn_failed(Failure::Write)),
                    Poll::Pending => {}
                }
            }
            if let Poll::Ready(Err(_)) = io.poll_flush_all(cx) {
                return Poll::Ready(self.conn_failed(Failure::Write));
            }
            if let Some(flow) = self.finished() {
                return Poll::Ready(flow);
            }
            match io.poll_read_slice(cx, &mut self.rbuf[self.rend..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    return Poll::Ready(self.conn_failed(Failure::Read))
                }
                Poll::Ready(Ok(n)) => {
                    self.rend += n;
                    let now = Instant::now();
                    if let Err(f) = self.process(now) {
                        return Poll::Ready(self.conn_failed(f));
                    }
                    self.dispatch(now);
                    progress = true;
                }
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Done when every slot is over and nothing is in flight; replaced when the connection can
    /// open no more streams (GOAWAY, ids used up) and its last stream ended.
    fn finished(&self) -> Option<Flow> {
        if self.active > 0 {
            return None;
        }
        if self.slots.iter().all(|s| s.state == State::Over) {
            return Some(Flow::Done);
        }
        (self.goaway || self.next_id > MAX_STREAM_ID).then_some(Flow::Reconnect)
    }

    /// The connection broke: every stream in flight fails with `f` (a connection that never
    /// got the server's SETTINGS counts as one failed connect).
    fn conn_failed(&mut self, f: Failure) -> Flow {
        if !self.ready {
            self.ctx.failure(Instant::now(), Failure::Connect);
        }
        for s in &mut self.slots {
            if let State::InFlight(_) = s.state {
                self.ctx.failure(s.intended, f);
                s.state = State::Idle;
            }
        }
        self.ids.clear();
        self.active = 0;
        Flow::Reconnect
    }

    /// Asks idle slot `i`'s pace what to do.
    fn pace_slot(&mut self, i: usize, now: Instant) {
        let s = &mut self.slots[i];
        match s.pace.due(now, &self.ctx.window) {
            Due::Now(t) => {
                s.intended = t;
                s.state = State::Queued;
                self.queue.push_back(i);
            }
            Due::At(t) => {
                s.state = State::Waiting(t);
                self.earliest_wait = Some(self.earliest_wait.map_or(t, |e| e.min(t)));
            }
            Due::Over => s.state = State::Over,
        }
    }

    /// Opens streams for queued slots while the server allows.
    fn dispatch(&mut self, now: Instant) {
        if !self.ready || self.goaway {
            return;
        }
        while self.active < self.max_streams && self.next_id <= MAX_STREAM_ID {
            let Some(i) = self.queue.pop_front() else {
                break;
            };
            self.open(i, now);
        }
    }

    fn open(&mut self, i: usize, now: Instant) {
        let id = self.next_id;
        self.next_id += 2;
        let s = &mut self.slots[i];
        s.state = State::InFlight(id);
        s.deadline = now + self.ctx.shared.timeout;
        s.status = 0;
        s.bytes = 0;
        s.recv_unacked = 0;
        s.send_window = self.peer_window;
        s.body_sent = 0;
        self.ids.insert(id, i);
        self.active += 1;
        let bodiless = self.body.is_empty();
        frame::headers(&mut self.out, id, self.block, bodiless, self.max_frame);
        if !bodiless {
            self.sending.push(i);
            self.send_bodies();
        }
    }

    /// Sends request body bytes as the flow-control windows allow.
    fn send_bodies(&mut self) {
        let mut k = 0;
        while k < self.sending.len() {
            let i = self.sending[k];
            let State::InFlight(id) = self.slots[i].state else {
                self.sending.swap_remove(k);
                continue;
            };
            let s = &mut self.slots[i];
            while s.body_sent < self.body.len() {
                let n = (self.body.len() - s.body_sent)
                    .min(self.max_frame)
                    .min(self.conn_send.max(0) as usize)
                    .min(s.send_window.max(0) as usize);
                if n == 0 {
                    break;
                }
                let end = s.body_sent + n == self.body.len();
                let flags = if end { flag::END_STREAM } else { 0 };
                frame::head(&mut self.out, n, kind::DATA, flags, id);
                self.out
                    .extend_from_slice(&self.body[s.body_sent..s.body_sent + n]);
                s.body_sent += n;
                s.send_window -= n as i64;
                self.conn_send -= n as i64;
            }
            if s.body_sent == self.body.len() {
                self.sending.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// Stream `i` ended: records the outcome, frees the slot and paces it again.
    fn finish(&mut self, i: usize, now: Instant, outcome: Result<(), Failure>, rst: bool) {
        let s = &mut self.slots[i];
        let State::InFlight(id) = s.state else {
            return;
        };
        self.ids.remove(&id);
        self.active -= 1;
        if rst || s.body_sent < self.body.len() {
            frame::rst_stream(&mut self.out, id, frame::CANCEL);
        }
        match outcome {
            Ok(()) => self.ctx.response(s.intended, now, s.status, s.bytes),
            Err(f) => self.ctx.failure(s.intended, f),
        }
        s.state = State::Idle;
        self.pace_slot(i, now);
    }

    /// Cuts the input into frames and handles each.
    fn process(&mut self, now: Instant) -> Result<(), Failure> {
        let buf = mem::take(&mut self.rbuf);
        let res = self.frames(&buf, now);
        self.rbuf = buf;
        if self.rstart == self.rend {
            (self.rstart, self.rend) = (0, 0);
        } else if self.rbuf.len() - self.rend < frame::HEAD + frame::DEFAULT_MAX_FRAME {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            (self.rstart, self.rend) = (0, self.rend - self.rstart);
        }
        res
    }

    fn frames(&mut self, buf: &[u8], now: Instant) -> Result<(), Failure> {
        while self.rend - self.rstart >= frame::HEAD {
            let h = Head::parse(&buf[self.rstart..]);
            if h.len > frame::DEFAULT_MAX_FRAME {
                return Err(Failure::Parse);
            }
            let start = self.rstart + frame::HEAD;
            if self.rend < start + h.len {
                break;
            }
            self.rstart = start + h.len;
            self.frame(h, &buf[start..start + h.len], now)?;
        }
        Ok(())
    }

    fn frame(&mut self, h: Head, p: &[u8], now: Instant) -> Result<(), Failure> {
        if let Some((sid, _)) = self.cont {
            if h.kind != kind::CONTINUATION || h.stream != sid {
                return Err(Failure::Parse);
            }
        }
        match h.kind {
            kind::DATA => self.on_data(h, p, now),
            kind::HEADERS => {
                if h.stream == 0 {
                    return Err(Failure::Parse);
                }
                let r = frame::unpad(&h, p).ok_or(Failure::Parse)?;
                let es = h.flags & flag::END_STREAM != 0;
                if h.flags & flag::END_HEADERS != 0 {
                    return self.on_block(h.stream, &p[r], es, now);
                }
                self.hblock.clear();
                self.hblock.extend_from_slice(&p[r]);
                self.cont = Some((h.stream, es));
                Ok(())
            }
            kind::CONTINUATION => {
                let Some((sid, es)) = self.cont else {
                    return Err(Failure::Parse);
                };
                if self.hblock.len() + p.len() > MAX_BLOCK {
                    return Err(Failure::Parse);
                }
                self.hblock.extend_from_slice(p);
                if h.flags & flag::END_HEADERS == 0 {
                    return Ok(());
                }
                self.cont = None;
                let block = mem::take(&mut self.hblock);
                let res = self.on_block(sid, &block, es, now);
                self.hblock = block;
                res
            }
            kind::RST_STREAM => {
                if p.len() != 4 || h.stream == 0 {
                    return Err(Failure::Parse);
                }
                if let Some(&i) = self.ids.get(&h.stream) {
                    self.finish(i, now, Err(Failure::Parse), false);
                }
                Ok(())
            }
            kind::SETTINGS => self.on_settings(h, p),
            kind::PING => {
                if p.len() != 8 || h.stream != 0 {
                    return Err(Failure::Parse);
                }
                if h.flags & flag::ACK == 0 {
                    frame::head(&mut self.out, 8, kind::PING, flag::ACK, 0);
                    self.out.extend_from_slice(p);
                }
                Ok(())
            }
            kind::GOAWAY => {
                if p.len() < 8 || h.stream != 0 {
                    return Err(Failure::Parse);
                }
                let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                self.goaway = true;
                // Streams above `last` were not processed: they fail.
                for i in 0..self.slots.len() {
                    if let State::InFlight(id) = self.slots[i].state {
                        if id > last {
                            self.finish(i, now, Err(Failure::Parse), false);
                        }
                    }
                }
                Ok(())
            }
            kind::WINDOW_UPDATE => {
                if p.len() != 4 {
                    return Err(Failure::Parse);
                }
                let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
                if h.stream == 0 {
                    if inc == 0 {
                        return Err(Failure::Parse);
                    }
                    self.conn_send += inc;
                } else if let Some(&i) = self.ids.get(&h.stream) {
                    if inc == 0 {
                        self.finish(i, now, Err(Failure::Parse), true);
                        return Ok(());
                    }
                    self.slots[i].send_window += inc;
                }
                self.send_bodies();
                Ok(())
            }
            // Push was disabled in our SETTINGS.
            kind::PUSH_PROMISE => Err(Failure::Parse),
            // PRIORITY and unknown types are ignored.
            _ => Ok(()),
        }
    }

    fn on_data(&mut self, h: Head, p: &[u8], now: Instant) -> Result<(), Failure> {
        if h.stream == 0 {
            return Err(Failure::Parse);
        }
        let r = frame::unpad(&h, p).ok_or(Failure::Parse)?;
        // Flow control counts the whole payload, padding included.
        self.conn_recv_unacked += h.len as u32;
        if self.conn_recv_unacked >= CONN_WINDOW / 2 {
            frame::window_update(&mut self.out, 0, self.conn_recv_unacked);
            self.conn_recv_unacked = 0;
        }
        let Some(&i) = self.ids.get(&h.stream) else {
            return Ok(());
        };
        let s = &mut self.slots[i];
        if s.status == 0 {
            // DATA before the response's head.
            self.finish(i, now, Err(Failure::Parse), true);
            return Ok(());
        }
        s.bytes += r.len() as u64;
        if h.flags & flag::END_STREAM != 0 {
            self.finish(i, now, Ok(()), false);
            return Ok(());
        }
        s.recv_unacked += h.len as u32;
        if s.recv_unacked >= STREAM_WINDOW / 2 {
            frame::window_update(&mut self.out, h.stream, s.recv_unacked);
            s.recv_unacked = 0;
        }
        Ok(())
    }

    /// A complete header block: decoded whatever its stream (the HPACK table depends on it),
    /// then the response's head or trailers.
    fn on_block(
        &mut self,
        stream: u32,
        block: &[u8],
        end_stream: bool,
        now: Instant,
    ) -> Result<(), Failure> {
        let mut status = None;
        self.hpack
            .decode(block, |n, v| {
                if n == b":status" {
                    status = parse_status(v);
                }
            })
            .map_err(|_| Failure::Parse)?;
        let Some(&i) = self.ids.get(&stream) else {
            return Ok(());
        };
        let s = &mut self.slots[i];
        if s.status == 0 {
            match status {
                Some(100..=199) if !end_stream => return Ok(()),
                Some(st @ 200..=599) => s.status = st,
                _ => {
                    self.finish(i, now, Err(Failure::Parse), !end_stream);
                    return Ok(());
                }
            }
        } else if !end_stream {
            // Trailers must end the stream.
            self.finish(i, now, Err(Failure::Parse), true);
            return Ok(());
        }
        if end_stream {
            self.finish(i, now, Ok(()), false);
        }
        Ok(())
    }

    fn on_settings(&mut self, h: Head, p: &[u8]) -> Result<(), Failure> {
        if h.stream != 0 {
            return Err(Failure::Parse);
        }
        if h.flags & flag::ACK != 0 {
            return if p.is_empty() {
                Ok(())
            } else {
                Err(Failure::Parse)
            };
        }
        if !p.len().is_multiple_of(6) {
            return Err(Failure::Parse);
        }
        for kv in p.chunks_exact(6) {
            let id = u16::from_be_bytes([kv[0], kv[1]]);
            let v = u32::from_be_bytes([kv[2], kv[3], kv[4], kv[5]]);
            match id {
                setting::MAX_CONCURRENT_STREAMS => self.max_streams = v as usize,
                setting::INITIAL_WINDOW_SIZE => {
                    if v > MAX_STREAM_ID {
                        return Err(Failure::Parse);
                    }
                    let delta = i64::from(v) - self.peer_window;
                    self.peer_window = i64::from(v);
                    for &i in &self.sending {
                        self.slots[i].send_window += delta;
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME as u32..=(1 << 24) - 1).contains(&v) {
                        return Err(Failure::Parse);
                    }
                    self.max_frame = v as usize;
                }
                // HEADER_TABLE_SIZE: our encoder keeps no table; ENABLE_PUSH and unknown
                // settings: nothing to do.
                _ => {}
            }
        }
        frame::head(&mut self.out, 0, kind::SETTINGS, flag::ACK, 0);
        self.ready = true;
        self.send_bodies();
        self.dispatch(Instant::now());
        Ok(())
    }

    /// The timer fired: deadlines, due open-loop slots, and a server that never answered the
    /// preface.
    fn on_timer(&mut self, now: Instant) -> Result<(), Failure> {
        if !self.ready && now >= self.born + self.ctx.shared.timeout {
            return Err(Failure::Timeout);
        }
        if now >= self.next_tick {
            self.next_tick = now + self.period;
            for i in 0..self.slots.len() {
                let s = &self.slots[i];
                if matches!(s.state, State::InFlight(_)) && s.deadline <= now {
                    self.finish(i, now, Err(Failure::Timeout), true);
                }
            }
        }
        if self.earliest_wait.is_some_and(|t| t <= now) {
            self.earliest_wait = None;
            for i in 0..self.slots.len() {
                match self.slots[i].state {
                    State::Waiting(t) if t <= now => {
                        self.slots[i].state = State::Idle;
                        self.pace_slot(i, now);
                    }
                    State::Waiting(t) => {
                        self.earliest_wait = Some(self.earliest_wait.map_or(t, |e| e.min(t)));
                    }
                    _ => {}
                }
            }
        }
        self.dispatch(now);
        Ok(())
    }

    /// Makes sure a timer is set for the next tick or the earliest waiting slot.
    fn arm_timer(&mut self) {
        let target = self
            .earliest_wait
            .map_or(self.next_tick, |t| t.min(self.next_tick));
        if self.timer_at.is_some_and(|at| at <= target) {
            return;
        }
        self.timer_at = Some(target);
        self.timer = Some(Box::pin(compio::time::sleep_until(target)));
    }
}

/// A `:status` value: three digits.
fn parse_status(v: &[u8]) -> Option<u16> {
    match v {
        [a, b, c] if v.iter().all(u8::is_ascii_digit) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b"20"), None);
        assert_eq!(parse_status(b"2x0"), None);
        assert_eq!(parse_status(b"2000"), None);
    }
}
