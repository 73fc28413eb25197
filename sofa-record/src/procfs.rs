//! Parsers of the /proc files the system collector samples. They take
//! bytes, so they are tested on inline samples of each file.

/// One `cpu` line of /proc/stat, in clock ticks (USER_HZ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// `None` for the aggregate `cpu` line, `Some(n)` for `cpuN`.
    pub cpu: Option<u32>,
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

pub fn parse_stat(bytes: &[u8]) -> Vec<CpuTimes> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let label = f.next()?.strip_prefix("cpu")?;
            let cpu = if label.is_empty() {
                None
            } else {
                Some(label.parse().ok()?)
            };
            let mut v = [0u64; 8];
            for slot in v.iter_mut() {
                *slot = f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            }
            Some(CpuTimes {
                cpu,
                user: v[0],
                nice: v[1],
                system: v[2],
                idle: v[3],
                iowait: v[4],
                irq: v[5],
                softirq: v[6],
                steal: v[7],
            })
        })
        .collect()
}

/// The /proc/meminfo fields sofa keeps, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    pub cached: u64,
}

impl MemInfo {
    /// Memory in use by processes and the kernel, excluding reclaimable cache.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

pub fn parse_meminfo(bytes: &[u8]) -> MemInfo {
    let text = String::from_utf8_lossy(bytes);
    let mut m = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let kb: u64 = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let slot = match key {
            "MemTotal" => &mut m.total,
            "MemFree" => &mut m.free,
            "MemAvailable" => &mut m.available,
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            _ => continue,
        };
        *slot = kb * 1024;
    }
    m
}

/// Cumulative bytes of one block device, from /proc/diskstats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskBytes {
    pub name: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// Whole devices and partitions; loop and ram devices are left out.
pub fn parse_diskstats(bytes: &[u8]) -> Vec<DiskBytes> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let name = f[2];
            if name.starts_with("loop") || name.starts_with("ram") {
                return None;
            }
            // Fields 6 and 10 (1-based 6th and 10th after the name) are sectors of 512 bytes.
            let sectors_read: u64 = f[5].parse().ok()?;
            let sectors_written: u64 = f[9].parse().ok()?;
            Some(DiskBytes {
                name: name.to_owned(),
                read_bytes: sectors_read * 512,
                write_bytes: sectors_written * 512,
            })
        })
        .collect()
}

/// Cumulative traffic of one interface, from /proc/net/dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceBytes {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

pub fn parse_net_dev(bytes: &[u8]) -> Vec<IfaceBytes> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            if v.len() < 10 {
                return None;
            }
            Some(IfaceBytes {
                name: name.trim().to_owned(),
                rx_bytes: v[0],
                rx_packets: v[1],
                tx_bytes: v[8],
                tx_packets: v[9],
            })
        })
        .collect()
}

/// The fields of /proc/PID/stat sofa keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat {
    pub pid: u32,
    /// Process state letter (`R`, `S`, `D`, `Z` for an exited, unreaped process, ...).
    pub state: char,
    pub ppid: u32,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub threads: u32,
    /// Pages.
    pub rss: u64,
}

/// Parses /proc/PID/stat; the comm field may hold spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_pid_stat(bytes: &[u8]) -> Option<PidStat> {
    let text = String::from_utf8_lossy(bytes);
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // f[0] is the state (field 3); field N is f[N - 3].
    let get = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(PidStat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: get(4)? as u32,
        utime: get(14)?,
        stime: get(15)?,
        threads: get(20)? as u32,
        rss: get(24)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let cpus = parse_stat(
            b"cpu  4705 356 584 3699176 23060 0 277 0 0 0\n\
              cpu0 1393 280 283 1832098 8541 0 91 7 0 0\n\
              cpu1 3312 76 301 1867078 14519 0 186 0 0 0\n\
              intr 114930548 113199788 3 0 5 263 0 4 [...]\n\
              ctxt 1990473\n",
        );
        assert_eq!(cpus.len(), 3);
        assert_eq!(cpus[0].cpu, None);
        assert_eq!((cpus[0].user, cpus[0].iowait), (4705, 23060));
        assert_eq!((cpus[1].cpu, cpus[1].steal), (Some(0), 7));
        assert_eq!(cpus[2].system, 301);
    }

    #[test]
    fn meminfo_fields_in_bytes() {
        let m = parse_meminfo(
            b"MemTotal:       16306524 kB\nMemFree:          233416 kB\n\
              MemAvailable:   10105404 kB\nBuffers:          518304 kB\nCached:          9204648 kB\n\
              SwapCached:        11504 kB\nHugePages_Total:       0\n",
        );
        assert_eq!(m.total, 16306524 * 1024);
        assert_eq!(m.available, 10105404 * 1024);
        assert_eq!(m.cached, 9204648 * 1024);
        assert_eq!(m.used(), (16306524 - 10105404) * 1024);
    }

    #[test]
    fn diskstats_sectors_to_bytes() {
        let d = parse_diskstats(
            b"   7       0 loop0 52 0 2040 12 0 0 0 0 0 28 12 0 0 0 0\n\
               259       0 nvme0n1 192531 41258 13428674 40112 1155014 1115305 65426848 1162934 0 1063640 1247618 0 0 0 0\n\
               259       1 nvme0n1p1 171 1022 10468 30 2 0 2 0 0 48 31 0 0 0 0\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "nvme0n1");
        assert_eq!(d[0].read_bytes, 13428674 * 512);
        assert_eq!(d[0].write_bytes, 65426848 * 512);
    }

    #[test]
    fn net_dev_counters() {
        let n = parse_net_dev(
            b"Inter-|   Receive                                                |  Transmit\n \
              face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
              lo: 2776770   11307    0    0    0     0          0         0  2776770   11307    0    0    0     0       0          0\n  \
              eth0: 1215645    2751    0    0    0     0          0         0  1782404    4324    0    0    0   427       0          0\n",
        );
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].name, "eth0");
        assert_eq!((n[1].rx_bytes, n[1].rx_packets), (1215645, 2751));
        assert_eq!((n[1].tx_bytes, n[1].tx_packets), (1782404, 4324));
    }

    #[test]
    fn pid_stat_with_awkward_comm() {
        let s = parse_pid_stat(
            b"4242 (py (worker) 1) S 4200 4242 4200 34816 4242 4194560 1520 0 0 0 \
              123 45 0 0 20 0 7 0 9157 237785088 5912 18446744073709551615 1 1 0 0 0 0 0 \
              16781312 2 0 0 0 17 1 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(
            s,
            PidStat {
                pid: 4242,
                state: 'S',
                ppid: 4200,
                utime: 123,
                stime: 45,
                threads: 7,
                rss: 5912,
            }
        );
        assert_eq!(parse_pid_stat(b"garbage"), None);
    }
}
