//! One response's compressor: gzip (zlib-rs through flate2), brotli (the pure-Rust encoder) or
//! zstd (libzstd), behind one call, [`Encoder::encode`], that takes a piece of the body and
//! appends what the encoder produced for it, flushed so that a streamed response is never held
//! back (a zlib sync flush, a brotli flush, a zstd flush), or the stream's end (trailer bytes
//! included) on the last piece. Memory is the encoder's state, bounded by its window; the output
//! of a piece is as large as that piece needs.

use brotli::enc::{
    encode::{
        BrotliEncoderDestroyInstance, BrotliEncoderOperation, BrotliEncoderParameter,
        BrotliEncoderStateStruct,
    },
    interface::PredictionModeContextMap,
    InputPair, InputReferenceMut, StandardAlloc, StaticCommand,
};
use flate2::{Compress, Compression, FlushCompress, Status};
use zstd::zstd_safe::{self, zstd_sys::ZSTD_EndDirective, CCtx, CParameter, InBuffer, OutBuffer};

use super::config::Library;

/// A compression stream.
pub(crate) enum Encoder {
    Gzip(Box<Compress>),
    Brotli(Box<Brotli>),
    Zstd(CCtx<'static>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Gzip(_) => "Encoder(gzip)",
            Encoder::Brotli(_) => "Encoder(brotli)",
            Encoder::Zstd(_) => "Encoder(zstd)",
        })
    }
}

/// Brotli's state, destroyed (its buffers handed back to the allocator) on drop.
pub(crate) struct Brotli(BrotliEncoderStateStruct<StandardAlloc>);

impl Drop for Brotli {
    fn drop(&mut self) {
        BrotliEncoderDestroyInstance(&mut self.0);
    }
}

/// Spare room to have in the output before each encoder call.
const MIN_ROOM: usize = 256;

/// Make room in `out` for about `pending` more input bytes' output.
fn make_room(out: &mut Vec<u8>, pending: usize) {
    if out.capacity() - out.len() < MIN_ROOM {
        out.reserve((pending / 2).max(out.len()).max(1024));
    }
}

/// `x`'s bit length (the window bits that hold `x` bytes).
fn bits_for(x: u64) -> u32 {
    64 - x.leading_zeros()
}

impl Encoder {
    /// A stream for `lib`. `size`: the body's length when the response said it (zstd and brotli
    /// then size their windows and tables to it).
    pub fn new(lib: &Library, size: Option<u64>) -> Result<Encoder, String> {
        match *lib {
            Library::Gzip { level, window_bits } => Ok(Encoder::Gzip(Box::new(
                Compress::new_gzip(Compression::new(level), window_bits),
            ))),
            Library::Brotli {
                quality,
                window_bits,
                input_block_bits,
                mode,
                disable_literal_context_modeling,
            } => {
                let mut s = BrotliEncoderStateStruct::new(StandardAlloc::default());
                // A window larger than the whole body only costs memory.
                let lgwin = match size {
                    Some(n) => window_bits.min(bits_for(n + 16).max(10)),
                    None => window_bits,
                };
                let mut ok = s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, quality)
                    && s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, lgwin)
                    && s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_MODE, mode as u32)
                    && s.set_parameter(
                        BrotliEncoderParameter::BROTLI_PARAM_DISABLE_LITERAL_CONTEXT_MODELING,
                        u32::from(disable_literal_context_modeling),
                    );
                if let Some(b) = input_block_bits {
                    ok &= s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGBLOCK, b);
                }
                if let Some(n) = size {
                    let hint = u32::try_from(n).unwrap_or(u32::MAX);
                    ok &= s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_SIZE_HINT, hint);
                }
                let b = Box::new(Brotli(s));
                if !ok {
                    return Err("brotli refused a parameter".into());
                }
                Ok(Encoder::Brotli(b))
            }
            Library::Zstd { level, checksum } => {
                let mut c = CCtx::try_create().ok_or("zstd could not allocate a context")?;
                let e = |code| zstd_safe::get_error_name(code).to_string();
                c.set_parameter(CParameter::CompressionLevel(level))
                    .map_err(e)?;
                c.set_parameter(CParameter::ChecksumFlag(checksum))
                    .map_err(e)?;
                // A pledged size lets zstd size its window and tables to the body (a small
                // response then costs kilobytes, not megabytes); a body of another length is
                // an error at the end of the stream.
                c.set_pledged_src_size(size).map_err(e)?;
                Ok(Encoder::Zstd(c))
            }
        }
    }

    /// Compress `input`, then flush (`last`: finish the stream), appending the output to `out`.
    pub fn encode(&mut self, input: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Encoder::Gzip(c) => gzip(c, input, last, out),
            Encoder::Brotli(b) => brotli(&mut b.0, input, last, out),
            Encoder::Zstd(c) => zstd(c, input, last, out),
        }
    }
}

fn gzip(c: &mut Compress, mut input: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), String> {
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        make_room(out, input.len());
        let (in_before, out_before) = (c.total_in(), c.total_out());
        let status = c
            .compress_vec(input, out, flush)
            .map_err(|e| format!("gzip: {e}"))?;
        let used = usize::try_from(c.total_in() - in_before).unwrap_or(input.len());
        input = &input[used.min(input.len())..];
        let progress = used > 0 || c.total_out() > out_before;
        match status {
            Status::StreamEnd => return Ok(()),
            // zlib: a flush is complete when input is used up and output space is left over.
            _ if !last && input.is_empty() && out.len() < out.capacity() => return Ok(()),
            Status::BufError if !progress && out.len() < out.capacity() => {
                return Err("gzip: the encoder made no progress".into())
            }
            _ => {}
        }
    }
}

fn brotli(
    s: &mut BrotliEncoderStateStruct<StandardAlloc>,
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let op = if last {
        BrotliEncoderOperation::BROTLI_OPERATION_FINISH
    } else {
        BrotliEncoderOperation::BROTLI_OPERATION_FLUSH
    };
    let mut nop = |_: &mut PredictionModeContextMap<InputReferenceMut>,
                   _: &mut [StaticCommand],
                   _: InputPair,
                   _: &mut StandardAlloc| {};
    let mut avail_in = input.len();
    let mut in_off = 0;
    loop {
        make_room(out, avail_in);
        let start = out.len();
        out.resize(out.capacity(), 0);
        let mut avail_out = out.len() - start;
        let mut out_off = start;
        let ok = s.compress_stream(
            op,
            &mut avail_in,
            input,
            &mut in_off,
            &mut avail_out,
            out,
            &mut out_off,
            &mut None,
            &mut nop,
        );
        out.truncate(out_off);
        if !ok {
            return Err("brotli: the encoder failed".into());
        }
        let done = if last {
            s.is_finished()
        } else {
            avail_in == 0 && !s.has_more_output()
        };
        if done {
            return Ok(());
        }
    }
}

fn zstd(c: &mut CCtx<'static>, input: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), String> {
    let directive = if last {
        ZSTD_EndDirective::ZSTD_e_end
    } else {
        ZSTD_EndDirective::ZSTD_e_flush
    };
    let mut inb = InBuffer::around(input);
    loop {
        make_room(out, input.len() - inb.pos());
        let pos = out.len();
        let mut outb = OutBuffer::around_pos(out, pos);
        let left = c
            .compress_stream2(&mut outb, &mut inb, directive)
            .map_err(|code| format!("zstd: {}", zstd_safe::get_error_name(code)))?;
        // With a flush or end directive, 0 means all input is in and all output is out.
        if left == 0 {
            return Ok(());
        }
    }
}
