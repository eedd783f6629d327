//! How much memory this process may still take, which bounds the one matrix a trace makes.
//!
//! `/proc/meminfo` speaks for the whole machine, also inside a container or a job whose control
//! group has a memory limit: in a 2 GiB group on this 24 GiB machine the budget read from it let
//! a 32k-token trace start its 2 GiB matrix, and the kernel killed the export with nothing
//! written, where the trace should have been refused by name and the rest exported. So the
//! group's limit counts too (cgroup v2 and v1: containers, Kubernetes pods, SLURM jobs): the room
//! the tightest limit over the group and its ancestors leaves, its use counted without the page
//! cache the kernel can drop (as the kubelet counts a pod's working set).

use std::path::{Path, PathBuf};

/// The memory available to this process now: the machine's, or its control group's room where
/// that is less; None where neither can be read (not Linux).
pub fn available() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| meminfo_available(&text));
    let group = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|groups| cgroup_room(Path::new("/sys/fs/cgroup"), &groups));
    match (machine, group) {
        (Some(m), Some(g)) => Some(m.min(g)),
        (m, g) => m.or(g),
    }
}

/// `MemAvailable` in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

/// A v1 limit at or above this is the kernel's "no limit" (2^63 less a page).
const UNLIMITED: u64 = 1 << 62;

/// The least room (limit less usage) over the groups `/proc/self/cgroup` names and their
/// ancestors under `root` (the cgroup mount); None where no group has a memory limit. A group
/// whose folder is not there (a container that sees only its own group at the mount's top) is
/// read from the ancestors that are, down to the mount's top, which is then its own.
fn cgroup_room(root: &Path, self_cgroup: &str) -> Option<u64> {
    let mut least: Option<u64> = None;
    for line in self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let (mount, files) = if id == "0" && controllers.is_empty() {
            (root.to_path_buf(), V2)
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), V1)
        } else {
            continue;
        };
        for dir in ancestors(&mount, path) {
            if let Some(room) = files.room(&dir) {
                least = Some(least.map_or(room, |l| l.min(room)));
            }
        }
    }
    least
}

/// The group's folder and each folder above it, up to and including the mount's top.
fn ancestors(mount: &Path, group: &str) -> Vec<PathBuf> {
    let mut dir = mount.join(group.trim_start_matches('/'));
    let mut dirs = Vec::new();
    while dir.starts_with(mount) {
        dirs.push(dir.clone());
        if !dir.pop() {
            break;
        }
    }
    dirs
}

/// Where a cgroup version keeps a group's limit, usage and the page cache it may drop.
struct Files {
    limit: &'static str,
    usage: &'static str,
    inactive_file: &'static str,
}

const V2: Files = Files { limit: "memory.max", usage: "memory.current", inactive_file: "inactive_file" };
const V1: Files = Files { limit: "memory.limit_in_bytes", usage: "memory.usage_in_bytes", inactive_file: "total_inactive_file" };

impl Files {
    /// The room a group's limit leaves; None where it has none (`max`, v1's huge value) or the
    /// folder has no such files.
    fn room(&self, dir: &Path) -> Option<u64> {
        let number = |file: &str| std::fs::read_to_string(dir.join(file)).ok()?.trim().parse::<u64>().ok();
        let limit = number(self.limit).filter(|&l| l < UNLIMITED)?;
        let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        let inactive = stat.lines().find_map(|l| l.strip_prefix(self.inactive_file)?.strip_prefix(' ')?.trim().parse::<u64>().ok()).unwrap_or(0);
        let used = number(self.usage).unwrap_or(0).saturating_sub(inactive);
        Some(limit.saturating_sub(used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("ft-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        root
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_v2_limit_above_the_group_counts_less_its_droppable_cache() {
        let root = tree(
            "v2",
            &[
                ("memory.max", "max\n"),
                ("kubepods/memory.max", &format!("{}\n", 16 * GIB)),
                ("kubepods/memory.current", &format!("{}\n", 6 * GIB)),
                ("kubepods/memory.stat", &format!("anon 1\ninactive_file {}\nactive_file 5\n", 2 * GIB)),
                ("kubepods/pod1/memory.max", "max\n"),
                ("kubepods/pod1/memory.current", "0\n"),
            ],
        );
        assert_eq!(cgroup_room(&root, "0::/kubepods/pod1\n"), Some(12 * GIB));
        // No limit anywhere, and a group that is not there read from the top it sees.
        assert_eq!(cgroup_room(&root, "0::/\n"), None);
        std::fs::write(root.join("memory.max"), format!("{}\n", 4 * GIB)).unwrap();
        assert_eq!(cgroup_room(&root, "0::/elsewhere/job\n"), Some(4 * GIB));
        assert_eq!(cgroup_room(&root, "0::/kubepods/pod1\n"), Some(4 * GIB), "the tightest ancestor");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_v1_memory_group_counts_and_its_unlimited_value_does_not() {
        let root = tree(
            "v1",
            &[
                ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory/slurm/job_7/memory.limit_in_bytes", &format!("{}\n", 8 * GIB)),
                ("memory/slurm/job_7/memory.usage_in_bytes", &format!("{}\n", 3 * GIB)),
                ("memory/slurm/job_7/memory.stat", &format!("cache 9\ninactive_file 1\ntotal_inactive_file {}\n", GIB)),
            ],
        );
        let groups = "12:pids:/slurm/job_7\n4:cpuacct,memory:/slurm/job_7\n1:name=systemd:/\n";
        assert_eq!(cgroup_room(&root, groups), Some(6 * GIB));
        assert_eq!(cgroup_room(&root, "4:memory:/\n"), None, "the kernel's no-limit value");
        assert_eq!(cgroup_room(&root, "3:cpu:/slurm/job_7\n"), None, "not the memory controller");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn meminfo_gives_bytes_and_this_machine_has_some() {
        assert_eq!(meminfo_available("MemTotal: 100 kB\nMemAvailable:   2048 kB\n"), Some(2 << 20));
        assert_eq!(meminfo_available("MemTotal: 100 kB\n"), None);
        if cfg!(target_os = "linux") {
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
            let total: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap();
            assert!(available().is_some_and(|a| a > 0 && a <= total * 1024));
        }
    }
}
