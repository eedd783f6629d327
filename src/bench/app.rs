//! `flowtracer bench --ui`: the app's interactive figures (a re-score after each kind of
//! parameter change, a frame of the text view, the step graph, the matrix view) and opening a
//! run of many traces.

use super::median;
use crate::params::Params;
use crate::synth::{SynthSpec, synth_trace};
use crate::trace::{Dtype, Trace};
use std::path::Path;
use std::time::{Duration, Instant};

/// Interactive figures of the app: one re-score of an N-token trace end to end (what the app does
/// after a parameter change), and the CPU time of one frame of the text view (layout of the
/// visible lines and tessellation, everything but the GPU upload), scrolled to the middle.
pub struct UiBench {
    pub n: usize,
    /// After a credit parameter change (step 9 over the earlier solution).
    pub rescore: Duration,
    /// After a backbone parameter change (steps 7–9 over the earlier solution).
    pub rebackbone: Duration,
    /// After a role parameter change (steps 8–9).
    pub reroles: Duration,
    /// After an aggregation change (the attention is read again).
    pub reaggregate: Duration,
    /// Every token's knock-out loss (the "colour by knock-out loss"), part of each re-score.
    pub knockout: Duration,
    pub frame: Duration,
    /// The Backbone view's steps mode: cutting the response into steps and summing φ between them
    /// (off the UI thread in the app).
    pub steps: Duration,
    /// The matrix view's overview texture reduced on the CPU, and a zoomed window of
    /// `DETAIL_MAX` tokens a side reduced again (on the UI thread, once the view is still).
    pub overview: Duration,
    pub detail: Duration,
}

pub fn ui_bench(n: usize, repeat: usize) -> Result<UiBench, String> {
    use crate::app::{Command, FlowApp, document::Document, recent::Recent};
    // ([4,8,N,N] would be a 34 GB synthetic trace from 16k tokens: long traces come as [N,N] F16)
    let (layers, heads) = if n >= super::LONG { (1, 1) } else { (4, 8) };
    let spec = SynthSpec { seed: n as u64, target_tokens: n, layers, heads, dtype: Dtype::F16, rank: 4, no_answer: false };
    spec.check()?;
    let bytes = synth_trace(&spec).to_bytes();
    let trace = Trace::from_bytes(bytes, Path::new("ui-bench.safetensors")).map_err(|e| e.to_string())?;
    let n = trace.n();
    let mut app = FlowApp::new(vec![Document::new(trace)], Params::default(), Recent::in_memory());
    app.model.rescoring.synchronous = true;
    let median_rescore = |app: &mut FlowApp, change: &dyn Fn(&mut Params, usize)| {
        let mut times = Vec::new();
        for i in 0..repeat.max(1) {
            change(&mut app.model.params, i);
            let t = Instant::now();
            app.model.rescore_now();
            times.push(t.elapsed());
        }
        median(times)
    };
    app.model.rescore_now();
    let rescore = median_rescore(&mut app, &|p, i| p.credit.fraction = if i % 2 == 0 { 0.3 } else { 0.4 });
    let rebackbone = median_rescore(&mut app, &|p, i| p.backbone.max_paths = if i % 2 == 0 { 6 } else { 8 });
    let reroles = median_rescore(&mut app, &|p, i| p.roles.hub_fraction = if i % 2 == 0 { 0.1 } else { 0.05 });
    let reaggregate = median_rescore(&mut app, &|p, i| p.aggregate.threshold = if i % 2 == 0 { 1e-4 } else { 0.0 });
    let ctx = egui::Context::default();
    crate::app::install_fonts(&ctx);
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 800.0))),
        ..Default::default()
    };
    app.apply(Command::Select { token: n / 2, extend: false });
    let mut frames = Vec::new();
    for i in 0..(repeat.max(1) * 4 + 3) {
        let t = Instant::now();
        let out = ctx.run_ui(input(), |ui| app.draw(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        if i >= 3 {
            frames.push(t.elapsed());
        }
    }
    let a = app.model.doc().and_then(|d| d.analysis.clone()).expect("analysed above");
    let knock = (0..repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(crate::flow::knockout::loss_per_token(&a.matrix, &a.result.reach, a.result.spans));
            t.elapsed()
        })
        .collect::<Vec<_>>();
    let d = app.model.doc().expect("opened above");
    let text = d.text.clone();
    let steps = median_of(repeat, || {
        let p = &a.plan.params;
        let given = crate::flow::steps::given_segments(&d.trace).expect("synthetic traces give no segments");
        let segments = crate::flow::steps::segments(&text, a.result.spans, &p.steps, given.as_deref());
        std::hint::black_box(crate::flow::steps::step_graph(&a.matrix, &a.result, &segments, p.steps.max_steps, &p.backbone));
    });
    use crate::app::views::matrix::{DETAIL_MAX, Layer, MAX_TEXTURE, Window, downsample, downsample_window};
    let overview = median_of(repeat, || {
        std::hint::black_box(downsample(&d.trace, &a, Layer::Aggregated, MAX_TEXTURE));
    });
    let w = DETAIL_MAX.min(n);
    let detail = median_of(repeat, || {
        std::hint::black_box(downsample_window(&d.trace, &a, Layer::Aggregated, Window { x0: (n - w) / 2, y0: n - w, w }, MAX_TEXTURE));
    });
    Ok(UiBench { n, rescore, rebackbone, reroles, reaggregate, knockout: median(knock), frame: median(frames), steps, overview, detail })
}

/// Opening a run of many small traces in the app: the time until its Run view is drawn, a frame
/// of that view afterwards, and the time until every row's status has been filled in (in the
/// background, through the backend `auto` picks).
pub struct RunOpenBench {
    pub count: usize,
    /// Listing the folder, opening its first trace and drawing the first frame of the Run view.
    pub open: Duration,
    pub frame: Duration,
    pub filled: Duration,
}

pub fn run_open_bench(count: usize, dir: &Path) -> Result<RunOpenBench, String> {
    use crate::app::{Command, FlowApp, recent::Recent};
    let root = dir.join(format!("run_{count}"));
    for i in 0..count {
        let step = root.join(format!("step_{:06}", i / 64));
        std::fs::create_dir_all(&step).map_err(|e| format!("{}: {e}", step.display()))?;
        let path = step.join(format!("sample_{:04}.safetensors", i % 64));
        if !path.exists() {
            let spec = SynthSpec { seed: i as u64, target_tokens: 48, layers: 1, heads: 1, dtype: Dtype::F16, rank: 2, no_answer: false };
            synth_trace(&spec).write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let ctx = egui::Context::default();
    crate::app::install_fonts(&ctx);
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 800.0))),
        ..Default::default()
    };
    let mut app = FlowApp::new(vec![], Params::default(), Recent::in_memory());
    let t = Instant::now();
    app.apply(Command::Open(root.clone()));
    let out = ctx.run_ui(input(), |ui| app.draw(ui));
    let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
    let open = t.elapsed();
    let mut frames = Vec::new();
    let mut filled = None;
    while filled.is_none() || frames.len() < 9 {
        let f = Instant::now();
        let out = ctx.run_ui(input(), |ui| app.draw(ui));
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        frames.push(f.elapsed());
        let run = app.model.run.as_ref().ok_or("the run did not open")?;
        if filled.is_none() && run.rows.iter().all(|r| r.status.is_some()) {
            filled = Some(t.elapsed());
        }
        if filled.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(RunOpenBench { count, open, frame: median(frames), filled: filled.expect("the loop ends when filled") })
}

/// The median time of `repeat` runs of `f` (at least one).
fn median_of(repeat: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..repeat.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}
