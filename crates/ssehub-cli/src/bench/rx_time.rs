//! Kernel receive timestamps for the subscribers' reads: `SO_TIMESTAMPNS` on a socket,
//! then every read is a `recvmsg` that takes the `SCM_TIMESTAMPNS` control message
//! (`CLOCK_REALTIME`; for TCP, the time the latest segment consumed by the read arrived).
//! Elsewhere than on Linux, plain reads without a timestamp.

pub(super) use imp::{control_buffer, enable, read};

#[cfg(target_os = "linux")]
mod imp {
    use std::io::{self, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Ask the kernel to stamp what this socket receives (if it refuses, reads carry no
    /// timestamp).
    pub(crate) fn enable(stream: &TcpStream) {
        let _ = setsockopt(stream, sockopt::ReceiveTimestampns, &true);
    }

    /// Room for one `SCM_TIMESTAMPNS` control message.
    pub(crate) fn control_buffer() -> Vec<u8> {
        nix::cmsg_space!(nix::sys::time::TimeSpec)
    }

    /// One non-blocking read: the bytes read, and when the kernel received them (ns since
    /// the epoch) if it said.
    pub(crate) fn read(
        stream: &TcpStream,
        buf: &mut [u8],
        control: &mut [u8],
    ) -> io::Result<(usize, Option<u64>)> {
        stream.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut *control),
                MsgFlags::empty(),
            )?;
            let mut received_ns = None;
            for cmsg in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                    received_ns = Some(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64);
                }
            }
            Ok((msg.bytes, received_ns))
        })
    }
}

/// Elsewhere: plain reads, no receive timestamps.
#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    use tokio::net::TcpStream;

    pub fn enable(_stream: &TcpStream) {}

    pub fn control_buffer() -> Vec<u8> {
        Vec::new()
    }

    pub fn read(
        stream: &TcpStream,
        buf: &mut [u8],
        _control: &mut [u8],
    ) -> io::Result<(usize, Option<u64>)> {
        stream.try_read(buf).map(|n| (n, None))
    }
}
