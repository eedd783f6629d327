//! The processor: its name and widest vectors, printed with every bench figure (this project's
//! CI machines are now an Intel Xeon and now an AMD EPYC, whose caches and prefetchers differ
//! enough to turn a change's gain into a loss, so a figure without its machine cannot be set
//! beside another), and its vendor, which the aggregation's prefetching is chosen by
//! (`flow::slab_row::prefetcher_stops_at_pages`). Read from CPUID, as the kernel reads it.

/// The processor's name as it reports it, and the widest vectors the pipeline's kernels take on
/// it: "AMD EPYC · AVX2".
pub fn describe() -> String {
    format!("{} · {}", brand().unwrap_or_else(|| std::env::consts::ARCH.to_string()), vectors())
}

/// The CPUID brand string (leaves 0x8000_0002–4), trimmed; None where the CPU has none.
fn brand() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        if __cpuid(0x8000_0000).eax < 0x8000_0004 {
            return None;
        }
        let bytes: Vec<u8> = (0x8000_0002..=0x8000_0004u32)
            .flat_map(|leaf| {
                let r = __cpuid(leaf);
                [r.eax, r.ebx, r.ecx, r.edx].into_iter().flat_map(u32::to_le_bytes)
            })
            .take_while(|&b| b != 0)
            .collect();
        let name = String::from_utf8_lossy(&bytes).split_whitespace().collect::<Vec<_>>().join(" ");
        (!name.is_empty()).then_some(name)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Whether the CPU is Intel's (CPUID's vendor string, leaf 0).
pub fn is_intel() -> bool {
    vendor().is_some_and(|v| v == *b"GenuineIntel")
}

fn vendor() -> Option<[u8; 12]> {
    #[cfg(target_arch = "x86_64")]
    {
        let id = std::arch::x86_64::__cpuid(0);
        let mut vendor = [0; 12];
        for (bytes, register) in vendor.chunks_exact_mut(4).zip([id.ebx, id.edx, id.ecx]) {
            bytes.copy_from_slice(&register.to_le_bytes());
        }
        Some(vendor)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The widest of the vector extensions the kernels are compiled for that this CPU has.
fn vectors() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512F";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2";
        }
    }
    "no AVX2"
}

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod tests {
    use super::*;

    /// A field of the kernel's `/proc/cpuinfo` for the first CPU, its spaces collapsed as ours are.
    fn cpuinfo(field: &str) -> String {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let value = cpuinfo.lines().find_map(|l| l.strip_prefix(field).filter(|rest| rest.trim_start().starts_with(':'))).unwrap_or_else(|| panic!("/proc/cpuinfo has no {field}"));
        value.trim_start_matches([' ', '\t', ':']).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The name is the one the kernel reports for the same CPU (it reads the same CPUID leaves).
    #[test]
    fn the_cpu_is_named_as_the_kernel_names_it() {
        let model = cpuinfo("model name");
        assert_eq!(brand().as_deref(), Some(model.as_str()));
        let line = describe();
        assert!(line.starts_with(&model) && line.contains(" · "), "{line}");
    }

    /// The vendor is the kernel's, and Intel's where the kernel says so.
    #[test]
    fn the_vendor_is_the_kernels() {
        let kernels = cpuinfo("vendor_id");
        assert_eq!(vendor().map(|v| String::from_utf8_lossy(&v).into_owned()), Some(kernels.clone()));
        assert_eq!(is_intel(), kernels == "GenuineIntel", "vendor {kernels}");
    }
}
