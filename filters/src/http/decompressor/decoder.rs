//! One body's decompressor: gzip (zlib-rs through flate2), brotli (the pure-Rust decoder) or
//! zstd (libzstd), behind one call, [`Decoder::push`], that takes a piece of the body and appends
//! everything it decodes to (nothing is held back), and [`Decoder::finish`], which says whether
//! the stream ended where the body did.
//!
//! Each library call writes at most `chunk_size` bytes; after each, the decoded total is checked
//! against `max_inflate_ratio` times the encoded bytes consumed so far, so a decompression bomb
//! costs at most one chunk past the limit. Memory is the decoder's state (zlib's 32 KiB window
//! at most; brotli's ring buffer, grown as the stream needs, up to its 16 MiB window; zstd's
//! window, capped at 8 MiB as RFC 9659 allows) plus one piece's output.
//!
//! Stream boundaries, as HTTP clients decode them: gzip may be several members back to back
//! (RFC 1952), each decoded in turn; zstd may be several frames; brotli is exactly one stream.
//! Bytes after the end (that are not another gzip member or zstd frame) are an error, and so
//! is a body that stops mid-stream.

use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use flate2::{Decompress, FlushDecompress, Status};
use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

use super::config::{Kind, Library};

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not a valid stream of the coding, bytes after its end, or a stream cut short.
    Corrupt,
    /// Decoded bytes exceeded `max_inflate_ratio` times the encoded bytes.
    TooLarge,
}

/// zstd's largest window for the `zstd` content-coding (RFC 9659: 8 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

type BrotliDecoderState =
    BrotliState<brotli::enc::StandardAlloc, brotli::enc::StandardAlloc, brotli::enc::StandardAlloc>;

/// The library's streaming state.
enum Lib {
    Gzip(Decompress),
    Brotli(Box<BrotliDecoderState>),
    Zstd(DCtx<'static>),
}

/// A decompression stream with its running totals.
pub(crate) struct Decoder {
    lib: Lib,
    chunk: usize,
    max_ratio: u64,
    /// Encoded bytes consumed, decoded bytes produced.
    total_in: u64,
    total_out: u64,
    /// The stream (gzip: the current member; zstd: the current frame) is complete.
    ended: bool,
    /// Brotli said it has decoded bytes it had no room for.
    more_output: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lib = match self.lib {
            Lib::Gzip(_) => "gzip",
            Lib::Brotli(_) => "brotli",
            Lib::Zstd(_) => "zstd",
        };
        f.debug_struct("Decoder")
            .field("lib", &lib)
            .field("total_in", &self.total_in)
            .field("total_out", &self.total_out)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Decoder {
    /// A stream for `lib`. `Err` only when zstd cannot allocate or configure its context.
    pub fn new(lib: &Library) -> Result<Decoder, Failure> {
        let state = match lib.kind {
            Kind::Gzip => Lib::Gzip(Decompress::new_gzip(lib.window_bits.clamp(9, 15))),
            // `new_strict`: RFC 7932 streams only (no large-window extension).
            Kind::Brotli => Lib::Brotli(Box::new(BrotliState::new_strict(
                Default::default(),
                Default::default(),
                Default::default(),
            ))),
            Kind::Zstd => {
                let mut d = DCtx::try_create().ok_or(Failure::Corrupt)?;
                d.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
                    .map_err(|_| Failure::Corrupt)?;
                Lib::Zstd(d)
            }
        };
        Ok(Decoder {
            lib: state,
            chunk: lib.chunk_size.max(1),
            max_ratio: lib.max_inflate_ratio,
            total_in: 0,
            total_out: 0,
            ended: false,
            more_output: false,
        })
    }

    /// Decode `input`, appending everything it decodes to to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        let mut input = input;
        let mut more = !input.is_empty() || self.more_output;
        while more {
            if self.ended && !input.is_empty() {
                self.next_stream()?;
            }
            let start = out.len();
            out.resize(start + self.chunk, 0);
            let (used, written) = match self.step(input, &mut out[start..]) {
                Ok(s) => s,
                Err(f) => {
                    out.truncate(start);
                    return Err(f);
                }
            };
            out.truncate(start + written);
            input = &input[used.min(input.len())..];
            self.total_in += used as u64;
            self.total_out += written as u64;
            if self.total_out > self.total_in.saturating_mul(self.max_ratio) {
                return Err(Failure::TooLarge);
            }
            if !input.is_empty() && used == 0 && written == 0 && !self.ended {
                // A decoder that takes no more input and gives nothing: never loop on it.
                return Err(Failure::Corrupt);
            }
            // A full chunk may have more behind it, even with the input used up.
            more = written == self.chunk || !input.is_empty() || self.more_output;
        }
        Ok(())
    }

    /// Whether the body ended where a stream did (nothing pending, nothing cut short).
    pub fn finish(&self) -> Result<(), Failure> {
        if self.ended {
            Ok(())
        } else {
            Err(Failure::Corrupt)
        }
    }

    /// Input follows the end of a stream: gzip starts the next member, zstd reads the next
    /// frame by itself, brotli has nothing after its end.
    fn next_stream(&mut self) -> Result<(), Failure> {
        match &mut self.lib {
            Lib::Gzip(d) => d.reset(true),
            Lib::Zstd(_) => {}
            Lib::Brotli(_) => return Err(Failure::Corrupt),
        }
        self.ended = false;
        Ok(())
    }

    /// One library call: decode from `input` into `out`; `(input used, bytes written)`.
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), Failure> {
        match &mut self.lib {
            Lib::Gzip(d) => {
                let (in0, out0) = (d.total_in(), d.total_out());
                let status = d
                    .decompress(input, out, FlushDecompress::None)
                    .map_err(|_| Failure::Corrupt)?;
                let used = (d.total_in() - in0) as usize;
                let written = (d.total_out() - out0) as usize;
                match status {
                    Status::StreamEnd => self.ended = true,
                    // No progress with input and room: zlib wants what it cannot have.
                    Status::BufError if used == 0 && written == 0 && !input.is_empty() => {
                        return Err(Failure::Corrupt)
                    }
                    _ => {}
                }
                Ok((used, written))
            }
            Lib::Brotli(s) => {
                let (mut avail_in, mut in_off) = (input.len(), 0);
                let (mut avail_out, mut out_off, mut total) = (out.len(), 0, 0);
                let r = BrotliDecompressStream(
                    &mut avail_in,
                    &mut in_off,
                    input,
                    &mut avail_out,
                    &mut out_off,
                    out,
                    &mut total,
                    s,
                );
                self.more_output = matches!(r, BrotliResult::NeedsMoreOutput);
                match r {
                    BrotliResult::ResultFailure => return Err(Failure::Corrupt),
                    BrotliResult::ResultSuccess => self.ended = true,
                    BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {}
                }
                Ok((in_off, out_off))
            }
            Lib::Zstd(d) => {
                let mut inb = InBuffer::around(input);
                let mut outb = OutBuffer::around(out);
                let hint = d
                    .decompress_stream(&mut outb, &mut inb)
                    .map_err(|_| Failure::Corrupt)?;
                let (used, written) = (inb.pos(), outb.pos());
                // 0: a frame is complete and flushed. A call that moved nothing (an empty
                // input after a full chunk) leaves a completed frame completed.
                self.ended = hint == 0 || (self.ended && used == 0 && written == 0);
                Ok((used, written))
            }
        }
    }
}
