//! `watch: true`: reload the config when its file changes. A `ringway-watch` thread watches the
//! file's directory with inotify (so an atomic rename over the file, a new inode, is seen as
//! well as an edit in place), waits until the file has been quiet for [`SETTLE`] (an editor's
//! or a deploy tool's several writes make one reload), then raises SIGHUP: the control thread
//! reloads exactly as for a signal, refusing a file that does not validate.
//!
//! Control side only; a leaf (std and libc).

use std::{
    ffi::CString,
    io,
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::Path,
    time::Duration,
};

/// Quiet time after the last change before the reload.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Start watching `path`'s directory for changes to `path`.
pub fn start(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the config path has no file name",
            )
        })?
        .to_os_string();
    // SAFETY: plain syscalls; results checked; the descriptor is owned from here on.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is new and ours.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let cdir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the config path"))?;
    let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_CREATE | libc::IN_MODIFY;
    // SAFETY: valid descriptor and NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cdir.as_ptr(), mask) } < 0 {
        return Err(io::Error::last_os_error());
    }
    tracing::info!(file = %path.display(), "watching the config file for changes");
    crate::background::spawn_background("ringway-watch", move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut pending = false;
        loop {
            // Wait for events; with a change pending, only until the file settles.
            let timeout = if pending {
                SETTLE.as_millis() as i32
            } else {
                -1
            };
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, timeout) };
            if ready < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %io::Error::last_os_error(), "config watch stopped");
                return;
            }
            if ready == 0 {
                pending = false;
                tracing::info!("config file changed: reloading");
                // SAFETY: kill(2) on our own pid; the control thread takes SIGHUP.
                unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
                continue;
            }
            // SAFETY: `buf` is valid for its length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                continue;
            }
            if names(&buf[..n as usize]).any(|f| f == name.as_bytes()) {
                pending = true;
            }
        }
    })?;
    Ok(())
}

/// The file names in a buffer of inotify events.
fn names(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let header = std::mem::size_of::<libc::inotify_event>();
    std::iter::from_fn(move || {
        if buf.len() < header {
            return None;
        }
        // `len` is the last field of the header (u32, native endian).
        let len = u32::from_ne_bytes(buf[header - 4..header].try_into().ok()?) as usize;
        let end = (header + len).min(buf.len());
        let name = &buf[header..end];
        buf = &buf[end..];
        let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
        Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_read_out_of_a_buffer() {
        let mut buf = Vec::new();
        for (wd, name) in [(1i32, "a.yaml"), (1, "ringway.yaml")] {
            let mut padded = name.as_bytes().to_vec();
            padded.resize(16, 0);
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&(libc::IN_MODIFY).to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&16u32.to_ne_bytes());
            buf.extend_from_slice(&padded);
        }
        let got: Vec<&[u8]> = names(&buf).collect();
        assert_eq!(got, vec![&b"a.yaml"[..], &b"ringway.yaml"[..]]);
    }
}
