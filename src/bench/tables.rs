//! The bench's tables: each step's time, each step against the machine's floor, and a device's
//! steps against that device's own floor. Only the binary prints them.

use super::{BatchRate, BenchRow, StepBytes};
use crate::render::share;
use std::time::Duration;

impl BenchRow {
    pub fn aggregate_gbps(&self) -> f64 {
        self.attention_bytes as f64 / self.steps.aggregate.as_secs_f64().max(1e-9) / 1e9
    }

    /// The GB/s cell: end to end from the mapped file; where the device timed them (CUDA's
    /// events, a wgpu adapter's timestamps), also the kernels alone.
    fn gbps_cell(&self) -> String {
        let end_to_end = format!("{:.2}", self.aggregate_gbps());
        match self.steps.aggregate_on_device.as_secs_f64() {
            0.0 => end_to_end,
            t => format!("{end_to_end} (kernels {})", share(self.attention_bytes as f64 / t / 1e9, 0)),
        }
    }
}

impl BatchRate {
    /// The batch's line: its rate, on one thread and what the pool's threads gain over that,
    /// and its share of the rate its files allow.
    pub fn line(&self) -> String {
        format!(
            "batch of {} different [N,N] F32 traces at N = {}, one run_batch: {:.0} traces/s ({}; {:.0} on one thread, so {:.2}× on {}); their files at the read floor: {:.0} traces/s, so {:.0}% of it",
            self.count,
            self.n,
            self.rate,
            self.backend,
            self.one_thread,
            self.rate / self.one_thread,
            self.threads,
            self.floor,
            100.0 * self.rate / self.floor
        )
    }

    /// The same batch as an RL step runs it, making only the credit, against the whole
    /// analysis and the files' floor.
    pub fn credit_line(&self) -> String {
        format!(
            "the same batch as an RL step runs it (credit_batch: the credit and what it is made from, no backbone or roles): {:.0} traces/s ({:.0} on one thread, so {:.2}× on {}), {:.2}× the run_batch, {:.0}% of the read floor",
            self.credit_rate,
            self.credit_one_thread,
            self.credit_rate / self.credit_one_thread,
            self.threads,
            self.credit_rate / self.rate,
            100.0 * self.credit_rate / self.floor
        )
    }

    /// The same traces exported as a run, every format and without the pictures, each as its
    /// rate and as how many times the batch's own time it takes.
    pub fn export_line(&self) -> String {
        format!(
            "the same {} traces exported as a run: {:.0} traces/s with every format ({:.1}× the run_batch), {:.0} without the PNG pictures ({:.1}×)",
            self.count,
            self.export,
            self.rate / self.export,
            self.export_without_png,
            self.rate / self.export_without_png
        )
    }

    /// Where one thread's time goes, step by step, the aggregation's read set against one
    /// thread's read floor over the same files.
    pub fn profile_line(&self) -> String {
        let t = &self.one_thread_steps;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let read = self.file_bytes / t.aggregate.as_secs_f64().max(1e-12);
        format!(
            "on one thread a trace takes {:.2} ms in its steps: aggregate {:.2} (its {:.1} MB file at {:.1} GB/s, {:.0}% of one thread's read floor of {:.1} GB/s), reach {:.2}, flow {:.2}{}, backbone {:.2}, roles {:.2}, credit {:.2}",
            ms(t.total()),
            ms(t.aggregate),
            self.file_bytes / 1e6,
            read / 1e9,
            100.0 * read / self.one_thread_floor,
            self.one_thread_floor / 1e9,
            ms(t.reach),
            ms(t.flow),
            if t.backbone_sweep_in_flow { " (with the backbone's first sweep)" } else { "" },
            ms(t.backbone),
            ms(t.roles),
            ms(t.credit)
        )
    }
}

/// Each row's steps against this machine's floor: the bytes each must touch, at what rate it
/// touched them, and that rate's share of the read floor; the pipeline and the export as
/// multiples of the time its bytes take at the floor. Where the matrix was fresh, the
/// aggregation also against reading the attention at the read floor plus first writing the
/// matrix at the first-touch floor.
pub fn format_floor_table(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| N | attention | read floor GB/s | aggregate: MB · GB/s · % of floor | fresh matrix: first-touch GB/s · aggregate % of read + first touch | reach | flow | backbone | pipeline: MB · ms at the floor · × floor | export × pipeline: all formats · without PNG |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let b = StepBytes::of(r.attention_bytes, r.n, &r.steps);
        let cell = |bytes: usize, t: Duration| {
            if bytes == 0 {
                return format!("in flow's pass (then {:.1} ms)", t.as_secs_f64() * 1e3);
            }
            let rate = bytes as f64 / t.as_secs_f64().max(1e-9);
            format!("{:.0} · {:.2} · {:.0}%", bytes as f64 / 1e6, rate / 1e9, 100.0 * rate / r.floor)
        };
        let at_floor = b.total() as f64 / r.floor;
        let fresh = r.first_touch.map_or("-".into(), |touch| {
            let matrix = crate::flow::Matrix::bytes_for(r.n) as f64;
            let floor_time = r.attention_bytes as f64 / r.floor + matrix / touch;
            format!("{:.2} · {:.0}%", touch / 1e9, 100.0 * floor_time / r.steps.aggregate.as_secs_f64().max(1e-9))
        });
        s.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {:.0} · {:.1} · {:.1}× | {} |\n",
            r.n,
            r.layout,
            r.floor / 1e9,
            cell(b.aggregate, r.steps.aggregate),
            fresh,
            cell(b.reach, r.steps.reach),
            cell(b.flow, r.steps.flow),
            cell(b.backbone, r.steps.backbone),
            b.total() as f64 / 1e6,
            at_floor * 1e3,
            r.pipeline.as_secs_f64() / at_floor,
            match (r.export, r.export_without_png) {
                (Some(all), Some(without)) => format!("{:.1}× · {:.1}×", all.as_secs_f64() / r.pipeline.as_secs_f64(), without.as_secs_f64() / r.pipeline.as_secs_f64()),
                _ => "-".into(),
            },
        ));
    }
    s
}

/// A line per row whose export drew a credit picture: its rows deflated on one core by ours
/// and by zlib-rs at level 2, side by side.
pub fn format_png_lines(rows: &[BenchRow]) -> String {
    rows.iter()
        .filter_map(|r| {
            let p = r.png?;
            let ms = |t: Duration| t.as_secs_f64() * 1e3;
            Some(format!(
                "N = {}: the credit picture's rows ({:.1} MB, {} band{}) on one core: our deflate {:.1} ms → {} KB, zlib-rs level 2 {:.1} ms → {} KB: {:.2} of its time, {:.2} of its size\n",
                r.n,
                p.rows_bytes as f64 / 1e6,
                p.bands,
                if p.bands == 1 { "" } else { "s" },
                ms(p.ours),
                p.ours_bytes / 1000,
                ms(p.zlib),
                p.zlib_bytes / 1000,
                p.ours.as_secs_f64() / p.zlib.as_secs_f64().max(1e-12),
                p.ours_bytes as f64 / p.zlib_bytes.max(1) as f64,
            ))
        })
        .collect()
}

/// A line per exported row: the export's time, then each phase's share of it (one trace, so
/// the phases follow one another: [`crate::export::phases`]).
pub fn format_export_phases(rows: &[BenchRow]) -> String {
    rows.iter()
        .filter_map(|r| {
            let (phases, export) = (r.export_phases?, r.export?);
            let ms = |t: Duration| t.as_secs_f64() * 1e3;
            let total = phases.end().as_secs_f64().max(1e-12);
            let parts: Vec<String> = phases.spans().iter().map(|(p, t)| format!("{} {:.1} ({:.0}%)", p.name(), ms(*t), 100.0 * t.as_secs_f64() / total)).collect();
            Some(format!("N = {}: the export's {:.1} ms (median): {}\n", r.n, ms(export), parts.join(", ")))
        })
        .collect()
}

/// The rows a device ran, each step against that device's own floor: the aggregation's kernels
/// (events around each launch) and the solves against its memory, the aggregation end to end
/// against the link its attention must cross, the pipeline against its bytes at both; the
/// backbone, which every backend runs on the host, as its time there. None when no row ran on a
/// device that measured one.
pub fn format_device_floor_table(rows: &[BenchRow]) -> Option<String> {
    let mut s = String::from(
        "| N | attention | memory floor GB/s (device copy) | link floor GB/s (host → device) · from pageable memory | aggregate kernels: MB · GB/s · % of memory | aggregate end to end: GB/s · % of link | reach | flow | backbone on the host: ms | pipeline: ms at the floor · × floor |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    for r in rows {
        let Some(d) = r.device else { continue };
        any = true;
        let b = StepBytes::of(r.attention_bytes, r.n, &r.steps);
        // Two significant digits where a figure is small: an emulated or tiny run's rates are
        // far below a GPU's, and "0.0" would say nothing.
        let cell = |bytes: usize, t: Duration| {
            let rate = bytes as f64 / t.as_secs_f64().max(1e-9);
            format!("{} · {} · {}%", share(bytes as f64 / 1e6, 0), share(rate / 1e9, 1), share(100.0 * rate / d.memory, 0))
        };
        let kernels = match r.steps.aggregate_on_device {
            t if t.is_zero() => "-".into(),
            t => cell(b.aggregate, t),
        };
        let end_to_end = r.attention_bytes as f64 / r.steps.aggregate.as_secs_f64().max(1e-9);
        let at_floor = r.attention_bytes as f64 / d.link + b.total() as f64 / d.memory;
        s.push_str(&format!(
            "| {} | {} | {} | {} · {} | {} | {} · {}% | {} | {} | {} | {} · {}× |\n",
            r.n,
            r.layout,
            share(d.memory / 1e9, 0),
            share(d.link / 1e9, 1),
            d.pageable.map_or("-".into(), |p| share(p / 1e9, 1)),
            kernels,
            share(end_to_end / 1e9, 1),
            share(100.0 * end_to_end / d.link, 0),
            cell(b.reach, r.steps.reach),
            cell(b.flow, r.steps.flow),
            share(r.steps.backbone.as_secs_f64() * 1e3, 1),
            share(at_floor * 1e3, 2),
            share(r.pipeline.as_secs_f64() / at_floor, 1),
        ));
    }
    any.then_some(s)
}

pub fn format_table(rows: &[BenchRow]) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    let mut s = String::from(
        "| N | attention | aggregate ms | GB/s | reach ms | flow ms | backbone ms | roles ms | credit ms | pipeline ms | export ms | peak heap MiB | matrix MiB | NumPy peer ms | speed-up |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |\n",
            r.n,
            r.layout,
            ms(r.steps.aggregate),
            r.gbps_cell(),
            ms(r.steps.reach),
            ms(r.steps.flow),
            ms(r.steps.backbone),
            ms(r.steps.roles),
            ms(r.steps.credit),
            ms(r.pipeline),
            r.export.map_or("-".into(), ms),
            r.peak_heap.map_or("n/a".into(), |b| format!("{:.0}", b as f64 / (1 << 20) as f64)),
            crate::flow::Matrix::bytes_for(r.n) as f64 / (1 << 20) as f64,
            r.peer.map_or("-".into(), ms),
            r.peer.map_or("-".into(), |p| format!("{:.1}×", p.as_secs_f64() / r.pipeline.as_secs_f64())),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::StepTimes;

    /// The batch's line reads its rate against one thread's and its files' floor; its export's,
    /// its time against the batch's.
    #[test]
    fn the_batch_is_read_against_one_thread_and_its_files() {
        let ms = |x: f64| Duration::from_secs_f64(x * 1e-3);
        let one_thread_steps = StepTimes { aggregate: ms(0.8), reach: ms(0.2), flow: ms(0.15), backbone: ms(0.5), roles: ms(0.1), credit: ms(0.05), ..Default::default() };
        let r = BatchRate { one_thread_steps, ..batch() };
        assert_eq!(
            r.line(),
            "batch of 64 different [N,N] F32 traces at N = 1024, one run_batch: 1200 traces/s (cpu; 640 on one thread, so 1.88× on 2); their files at the read floor: 4000 traces/s, so 30% of it"
        );
        assert_eq!(
            r.profile_line(),
            "on one thread a trace takes 1.80 ms in its steps: aggregate 0.80 (its 4.2 MB file at 5.2 GB/s, 50% of one thread's read floor of 10.5 GB/s), reach 0.20, flow 0.15, backbone 0.50, roles 0.10, credit 0.05"
        );
        assert_eq!(r.export_line(), "the same 64 traces exported as a run: 300 traces/s with every format (4.0× the run_batch), 800 without the PNG pictures (1.5×)");
        assert_eq!(
            r.credit_line(),
            "the same batch as an RL step runs it (credit_batch: the credit and what it is made from, no backbone or roles): 1800 traces/s (1000 on one thread, so 1.80× on 2), 1.50× the run_batch, 45% of the read floor"
        );
    }

    fn batch() -> BatchRate {
        BatchRate { count: 64, n: 1024, backend: "cpu", threads: 2, rate: 1200.0, one_thread: 640.0, credit_rate: 1800.0, credit_one_thread: 1000.0, floor: 4000.0, one_thread_steps: StepTimes::default(), file_bytes: 4.2e6, one_thread_floor: 10.5e9, export: 300.0, export_without_png: 800.0 }
    }

    fn row(first_touch: Option<f64>) -> BenchRow {
        let n = 1000;
        let steps = StepTimes { aggregate: Duration::from_millis(10), ..Default::default() };
        BenchRow { n, layout: "[N,N] F32".into(), attention_bytes: 4_000_000, steps, pipeline: Duration::from_millis(20), export: None, export_without_png: None, png: None, export_phases: None, peak_heap: None, peer: None, floor: 4e9, first_touch, device: None }
    }

    /// A fresh matrix's aggregation is set against reading the attention at the read floor plus
    /// first writing the matrix at the first-touch floor; a reused one's shows no such cell.
    #[test]
    fn a_fresh_matrix_is_measured_against_read_and_first_touch() {
        let matrix = crate::flow::Matrix::bytes_for(1000) as f64;
        // 4 MB at 4 GB/s is 1 ms; the matrix at 1 GB/s is matrix/1e9 s; over the step's 10 ms
        let share = 100.0 * (1e-3 + matrix / 1e9) / 10e-3;
        let table = format_floor_table(&[row(Some(1e9)), row(None)]);
        let lines: Vec<&str> = table.lines().skip(2).collect();
        let cells = |l: &str| l.split(" | ").map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cells(lines[0])[4], format!("1.00 · {share:.0}%"), "{table}");
        assert_eq!(cells(lines[1])[4], "-", "{table}");
        assert_eq!(cells(lines[0]).len(), cells(table.lines().next().unwrap()).len(), "a cell per column");
    }

    /// Where the backbone's first sweep rode along with the flow solve, the flow's pass is the
    /// one read of M the two make: the backbone has no bytes of its own, and the pipeline's floor
    /// counts the matrix once less.
    #[test]
    fn a_sweep_in_the_flows_pass_is_counted_once() {
        let matrix = crate::flow::Matrix::bytes_for(1000);
        let mut fused = row(None);
        fused.steps.backbone = Duration::from_micros(400);
        fused.steps.backbone_sweep_in_flow = true;
        let table = format_floor_table(&[row(None), fused]);
        let lines: Vec<&str> = table.lines().skip(2).collect();
        let cells = |l: &str| l.split(" | ").map(str::to_string).collect::<Vec<_>>();
        let (apart, along) = (cells(lines[0]), cells(lines[1]));
        assert_eq!(along[7], "in flow's pass (then 0.4 ms)", "{table}");
        assert!(apart[7].starts_with(&format!("{:.0} · ", matrix as f64 / 1e6)), "{table}");
        let mb = |c: &str| c.split(" · ").next().unwrap().parse::<f64>().unwrap();
        assert_eq!(mb(&apart[8]) - mb(&along[8]), (matrix as f64 / 1e6).round(), "{table}");
        let fused_steps = StepTimes { backbone_sweep_in_flow: true, ..Default::default() };
        let r = BatchRate { one_thread_steps: fused_steps, ..batch() };
        assert!(r.profile_line().contains("flow 0.00 (with the backbone's first sweep), backbone"), "{}", r.profile_line());
    }

    /// A device's rows are read against its own memory and link: the kernels' bytes (attention
    /// read, matrix written) over their event time against the copy rate, the aggregation end to
    /// end against the link, the pipeline against its attention going up plus every step's
    /// bytes at the memory's rate; the backbone as its time on the host. Kernels without a timer
    /// get no figure; a CPU run no table.
    #[test]
    fn a_device_row_is_read_against_its_own_floor() {
        assert!(format_device_floor_table(&[row(None)]).is_none());
        let device = Some(crate::backend::DeviceFloor { memory: 100e9, link: 4e9, pageable: Some(2e9) });
        let mut timed = BenchRow { device, ..row(None) };
        timed.steps.aggregate_on_device = Duration::from_millis(1);
        timed.steps.reach = Duration::from_millis(2);
        timed.steps.backbone = Duration::from_micros(1500);
        let untimed = BenchRow { device, ..row(None) };
        let table = format_device_floor_table(&[timed, untimed]).expect("rows on a device");
        let lines: Vec<&str> = table.lines().collect();
        let cells = |l: &str| l.split(" | ").map(str::to_string).collect::<Vec<_>>();
        let (a, b) = (cells(lines[2]), cells(lines[3]));
        assert_eq!(a.len(), cells(lines[0]).len(), "a cell per column: {table}");
        let matrix = crate::flow::Matrix::bytes_for(1000) as f64;
        // 6.0 MB in 1 ms: 6.0 GB/s, 6% of 100; 2.0 MB in 2 ms: 1.0 GB/s, 0.999%; small shares keep
        // two significant digits.
        assert_eq!(a[4], "6 · 6.0 · 6%", "{table}");
        assert_eq!(a[3], "4.0 · 2.0", "the link, and from pageable memory: {table}");
        assert_eq!(a[5], "0.4 · 10%", "{table}");
        assert_eq!(a[6], "2 · 1.0 · 1.00%", "{table}");
        assert_eq!(a[8], "1.5", "the backbone, run on the host, as its time there: {table}");
        let at_floor = 4e6 / 4e9 + (4e6 + 4.0 * matrix) / 100e9;
        assert_eq!(a[9].trim_end_matches(" |"), format!("{:.2} · {:.1}×", at_floor * 1e3, 20e-3 / at_floor), "{table}");
        assert_eq!(b[4], "-", "{table}");
    }
}
