//! The system clock and the RTC, behind traits. This is the only module with `unsafe`: the
//! Linux calls `clock_settime`, `adjtime` and the RTC ioctls.
//!
//! Policy (step once, then slew, never below the floor) lives in the core's `System`, which
//! queues `Step` and `Slew` actions that the daemon's `effects` carry out through these traits.
#![allow(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};

use trusttime_core::{SignedDuration, UnixTime};

/// Changing the system clock.
pub trait ClockControl: Send + Sync + std::fmt::Debug {
    /// Steps the clock by `by` (positive: forward).
    ///
    /// # Errors
    /// From the operating system (EPERM without CAP_SYS_TIME).
    fn step(&self, by: SignedDuration) -> io::Result<()>;
    /// Slews the clock by `by`, gradually.
    ///
    /// # Errors
    /// From the operating system.
    fn slew(&self, by: SignedDuration) -> io::Result<()>;
}

/// A real-time clock chip.
pub trait Rtc: Send + Sync + std::fmt::Debug {
    /// Reads it (UTC).
    ///
    /// # Errors
    /// From the device.
    fn read(&self) -> io::Result<UnixTime>;
    /// Sets it (UTC, whole seconds).
    ///
    /// # Errors
    /// From the device.
    fn set(&self, t: UnixTime) -> io::Result<()>;
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`) and the time since boot
/// (`CLOCK_BOOTTIME`, which counts suspend too): together they tell a daemon restart, where
/// the elapsed time since a save is exact, from a reboot. `None` when either is unavailable.
#[must_use]
pub fn boot_instant() -> Option<(String, SignedDuration)> {
    use std::io::Read;
    let mut id = String::new();
    std::fs::File::open("/proc/sys/kernel/random/boot_id")
        .ok()?
        .take(64)
        .read_to_string(&mut id)
        .ok()?;
    let id = id.trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    // 32-bit targets have narrower fields.
    #[allow(clippy::useless_conversion)]
    let ns = i64::from(ts.tv_sec)
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(ts.tv_nsec))?;
    Some((id.to_owned(), SignedDuration::from_nanos(ns)))
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` when another process
/// holds it. Released when the file is closed (or the process exits).
///
/// # Errors
/// Any other failure of `flock`.
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is valid for as long as `file` lives.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// True when this process may set the clock (CAP_SYS_TIME in its effective set).
#[must_use]
pub fn has_cap_sys_time() -> bool {
    let Ok(s) = crate::files::read_to_string(
        Path::new("/proc/self/status"),
        64 << 10,
        crate::files::Links::Follow,
    ) else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 25) != 0)
}

/// This process's effective user ID.
#[must_use]
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The message for a process that may not set the clock.
pub const NO_CAP_MESSAGE: &str = "this process lacks CAP_SYS_TIME and cannot set the clock. Run as root, grant the capability (systemd: AmbientCapabilities=CAP_SYS_TIME), or run observe-only: `--observe-only` or `[clock] observe-only = true`.";

/// The Linux system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxClock;

impl ClockControl for LinuxClock {
    fn step(&self, by: SignedDuration) -> io::Result<()> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid, writable timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let now = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
        let to = now + i128::from(by.as_nanos());
        let new = libc::timespec {
            // `as _`: the field's own type (64-bit time_t on every 64-bit libc, glibc or musl).
            tv_sec: (to.div_euclid(1_000_000_000)) as _,
            tv_nsec: (to.rem_euclid(1_000_000_000)) as libc::c_long,
        };
        // SAFETY: new is a valid timespec; the kernel checks permissions.
        if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn slew(&self, by: SignedDuration) -> io::Result<()> {
        let us = by.as_nanos() / 1000;
        let tv = libc::timeval {
            tv_sec: (us.div_euclid(1_000_000)) as _,
            tv_usec: (us.rem_euclid(1_000_000)) as _,
        };
        // SAFETY: tv is a valid timeval; the old-delta pointer may be null.
        if unsafe { libc::adjtime(&tv, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// `struct rtc_time` of `<linux/rtc.h>`.
#[repr(C)]
#[derive(Default)]
struct RtcTime {
    tm_sec: libc::c_int,
    tm_min: libc::c_int,
    tm_hour: libc::c_int,
    tm_mday: libc::c_int,
    tm_mon: libc::c_int,
    tm_year: libc::c_int,
    tm_wday: libc::c_int,
    tm_yday: libc::c_int,
    tm_isdst: libc::c_int,
}

const RTC_RD_TIME: libc::c_ulong = 0x8024_7009; // _IOR('p', 0x09, struct rtc_time)
const RTC_SET_TIME: libc::c_ulong = 0x4024_700a; // _IOW('p', 0x0a, struct rtc_time)

/// A Linux RTC device (`/dev/rtc0`), kept in UTC like `hwclock --utc`.
#[derive(Clone, Debug)]
pub struct LinuxRtc {
    path: PathBuf,
}

impl LinuxRtc {
    /// The device at `path`.
    #[must_use]
    pub fn new(path: &Path) -> Self {
        LinuxRtc {
            path: path.to_owned(),
        }
    }
}

impl Rtc for LinuxRtc {
    fn read(&self) -> io::Result<UnixTime> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&self.path)?;
        let mut t = RtcTime::default();
        // SAFETY: the fd is open for the call's duration; t matches the kernel's struct layout.
        if unsafe { libc::ioctl(f.as_raw_fd(), RTC_RD_TIME as _, &mut t as *mut RtcTime) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let c = trusttime_core::time::Civil {
            year: t.tm_year + 1900,
            month: u8::try_from(t.tm_mon + 1).unwrap_or(0),
            day: u8::try_from(t.tm_mday).unwrap_or(0),
            hour: u8::try_from(t.tm_hour).unwrap_or(0),
            minute: u8::try_from(t.tm_min).unwrap_or(0),
            second: u8::try_from(t.tm_sec).unwrap_or(0),
            nanos: 0,
        };
        UnixTime::from_civil(c).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "the RTC holds an invalid date")
        })
    }

    fn set(&self, at: UnixTime) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let c = at.to_civil();
        let t = RtcTime {
            tm_sec: c.second.into(),
            tm_min: c.minute.into(),
            tm_hour: c.hour.into(),
            tm_mday: c.day.into(),
            tm_mon: i32::from(c.month) - 1,
            tm_year: c.year - 1900,
            ..RtcTime::default()
        };
        let f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        // SAFETY: as above; the kernel only reads t.
        if unsafe { libc::ioctl(f.as_raw_fd(), RTC_SET_TIME as _, &t as *const RtcTime) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_instant_is_stable_within_a_boot_and_moves_forward() {
        let (a_id, a) = boot_instant().unwrap();
        let (b_id, b) = boot_instant().unwrap();
        assert_eq!(a_id, b_id);
        assert!(b >= a && a > SignedDuration::ZERO);
    }
}

/// Asks the kernel to stamp every datagram that arrives on `fd` with the time it arrived
/// (`SO_TIMESTAMPNS`), so that a reply's receive time does not include how long the daemon
/// took to read it.
///
/// # Errors
/// From `setsockopt`.
pub fn stamp_arrivals(fd: std::os::fd::RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` outlives the call and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of_val(&on) as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receives one datagram on `fd` without waiting: its length and, when the kernel stamped
/// it (see [`stamp_arrivals`]), how long ago it arrived by the system clock (negative when the
/// clock was stepped back since).
///
/// # Errors
/// `WouldBlock` when none is waiting; a pending socket error (e.g. ICMP port unreachable on a
/// connected socket).
pub fn recv_stamped(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SignedDuration>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one `timespec` control message, aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (into `buf`) and `control`, all alive and writable for
    // the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    let Ok(len) = usize::try_from(n) else {
        return Err(io::Error::last_os_error());
    };
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        // Longer than any reply we ask for: never parsed as the shorter datagram it was cut to.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a datagram longer than {} bytes, dropped", buf.len()),
        ));
    }
    let mut stamp = None;
    // SAFETY: the CMSG_* walk stays inside `control`, as filled in by `recvmsg`
    // (`msg_controllen` is what the kernel wrote); the timestamp is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                stamp = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c).cast::<libc::timespec>(),
                ));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let Some(ts) = stamp else {
        return Ok((len, None));
    };
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
        return Ok((len, None));
    }
    let ns = |t: &libc::timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let age = i64::try_from(ns(&now) - ns(&ts))
        .ok()
        .map(SignedDuration::from_nanos);
    Ok((len, age))
}

#[cfg(test)]
mod stamp_tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A datagram that waited before it was read says how long it waited; one on a socket
    /// without stamps says nothing; none waiting is `WouldBlock`.
    #[test]
    fn a_datagram_that_waited_says_how_long() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        let e = recv_stamped(rx.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tx.send_to(b"unstamped", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(recv_stamped(rx.as_raw_fd(), &mut buf).unwrap(), (9, None));
        stamp_arrivals(rx.as_raw_fd()).unwrap();
        // The kernel turns arrival stamps on shortly after the first socket asks (until then a
        // datagram is stamped when read): the first ones may say they did not wait.
        let mut ages = Vec::new();
        for _ in 0..50 {
            tx.send_to(b"stamped", rx.local_addr().unwrap()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            let (len, age) = recv_stamped(rx.as_raw_fd(), &mut buf).unwrap();
            assert_eq!(&buf[..len], b"stamped");
            let age = age.expect("a stamp");
            assert!(age < SignedDuration::from_secs(5), "{age:?}");
            ages.push(age);
            if age >= SignedDuration::from_millis(29) {
                return;
            }
        }
        panic!("no datagram was stamped when it arrived: {ages:?}");
    }

    /// A datagram longer than the buffer is an error, not the buffer's worth of it, and the
    /// next datagram is read whole.
    #[test]
    fn a_datagram_longer_than_the_buffer_is_dropped() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        tx.send_to(&[7u8; 65], rx.local_addr().unwrap()).unwrap();
        tx.send_to(&[8u8; 64], rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let e = recv_stamped(rx.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("longer than 64 bytes"), "{e}");
        let (len, _) = recv_stamped(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((len, buf), (64, [8u8; 64]));
    }
}
