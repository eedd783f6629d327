//! The processor a bench ran on, printed with its figures: this project's CI machines are now
//! an Intel Xeon and now an AMD EPYC, whose caches and prefetchers differ enough to turn a
//! change's gain into a loss (`flow::slab_row::prefetcher_stops_at_pages`), so a figure without
//! its machine cannot be set beside another.

/// The processor's name as it reports it, and the widest vectors the pipeline's kernels take on
/// it: "AMD EPYC · AVX-512F".
pub fn cpu() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The name is the one the kernel reports for the same CPU (it reads the same CPUID leaves),
    /// spaces collapsed as ours are.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn the_cpu_is_named_as_the_kernel_names_it() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|v| v.trim_start_matches([' ', '\t', ':']).split_whitespace().collect::<Vec<_>>().join(" ")).unwrap();
        assert_eq!(brand().as_deref(), Some(model.as_str()));
        let line = cpu();
        assert!(line.starts_with(&model) && line.contains(" · "), "{line}");
    }
}
