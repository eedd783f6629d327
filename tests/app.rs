//! The real app driven headless with egui_kittest: the same `FlowApp::draw` the window runs.
//! Interaction tests need no GPU; the snapshot test renders on a wgpu adapter (Mesa's lavapipe in
//! CI, where FLOWTRACER_REQUIRE_GPU=1 makes a missing adapter a failure instead of a skip).

mod common;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use flowtracer::app::{FlowApp, View};

fn harness() -> Harness<'static, FlowApp> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), FlowApp::sample_synchronous());
    h.run();
    h
}

fn click_token(h: &mut Harness<'static, FlowApp>, k: usize) {
    let rect = h.state().ui.text.rect_of(k).unwrap_or_else(|| panic!("token {k} is not on screen"));
    let pos = rect.center();
    h.hover_at(pos);
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton { pos, button: egui::PointerButton::Primary, pressed, modifiers: Default::default() });
    }
    h.run();
}

#[test]
fn opens_the_sample_and_inspects_a_clicked_token() {
    let mut h = harness();
    let doc = &h.state().model.docs[0];
    let a = doc.analysis.clone().expect("analysed on open");
    // A hub of the response: click it in the text view and read the inspector.
    let k = a.result.hubs[0];
    let token = doc.trace.tokens[k].clone();
    click_token(&mut h, k);
    assert_eq!(h.state().ui.marks.selected, Some(k));
    h.get_by_label(&format!("#{k} {token:?}"));
    h.get_by_label(&format!("{:.5}", a.result.flow[k]));
    h.get_by_label(&format!("{:.5}", a.result.throughput[k]));
    h.get_by_label_contains("response · hub");
    h.get_by_label("strongest inflow");
    // An inflow edge is a link that selects its source.
    let (src, _) = flowtracer::flow::conserve::strongest_into(&a.matrix, &a.result.reach, &a.result.flow, a.plan.spans.answer, k, 1)[0];
    h.get_by_label_contains(&format!("#{src} ")).click();
    h.run();
    assert_eq!(h.state().ui.marks.selected, Some(src));
}

/// In a small window the text is laid out to the width it is shown in: every token left of the
/// side panel. (The legend's row, wider than the view, had widened it: at 800 px the last tokens
/// of each line ran under the inspector.)
#[test]
fn in_a_small_window_the_text_stays_left_of_the_side_panel() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), FlowApp::sample_synchronous());
    h.run_steps(3);
    let panel = h.get_by_label("Inspector").rect().left();
    let n = h.state().model.docs[0].trace.n();
    let rights: Vec<f32> = (0..n).map(|k| h.state().ui.text.rect_of(k).unwrap_or_else(|| panic!("token {k} is not on screen")).right()).collect();
    let widest = rights.iter().copied().fold(0.0, f32::max);
    assert!(widest < panel, "a token reaches x = {widest}, the side panel starts at {panel}");
}

/// At 1280 px the toolbar is one row with a rollout's long file name open beside the sample (the
/// name cut short to fit, whole on hover), and at 1024 px the jumps wrap to the next row as a
/// group, "next" with its buttons.
#[test]
fn the_toolbar_keeps_its_row_with_long_trace_names() {
    let dir = common::temp_dir("app-long-name");
    let long = dir.join("rollout_step_000120_sample_0042_rank3_policy_v2_long_name.safetensors");
    std::fs::copy("sample_traces/addition.safetensors", &long).unwrap();
    for (width, one_row) in [(1280.0, true), (1024.0, false)] {
        let mut h = Harness::builder()
            .with_size(egui::vec2(width, 800.0))
            .build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), FlowApp::sample_synchronous());
        h.run();
        h.state().sender().send(flowtracer::app::Command::Open(long.clone()));
        h.run_steps(4);
        assert_eq!(h.state().model.docs.len(), 2);
        // Rows by their middles: a label sits lower than a button in the same row.
        let middle = |r: egui::Rect| r.center().y;
        let same_row = |a: f32, b: f32| (a - b).abs() < 6.0;
        let row = middle(h.get_by_label("Text").rect());
        let picker = h.get_by_label("trace").rect();
        assert!(picker.width() <= 200.0, "the trace picker is {} px wide", picker.width());
        let (next, checkpoint) = (middle(h.get_by_label("next").rect()), middle(h.get_by_role_and_label(Role::Button, "checkpoint").rect()));
        assert!(same_row(next, checkpoint), "at {width} px: \"next\" at y = {next} and its buttons at y = {checkpoint} share a row");
        let end = h.get_by_role_and_label(Role::Button, "checkpoint").rect().right();
        assert!(end <= width, "at {width} px the jumps run out of the window, to x = {end}");
        let diff = middle(h.get_by_label_contains("diff (").rect());
        assert_eq!(same_row(diff, row), one_row, "at {width} px: the diff toggle at y = {diff}, the views at y = {row}");
    }
}

#[test]
fn changing_a_parameter_rescores_and_changes_credit() {
    let mut h = harness();
    let before = h.state().model.docs[0].analysis.clone().unwrap();
    let credited = |a: &flowtracer::app::document::Analysis| a.result.credit.iter().filter(|&&g| g > 1.0).count();
    assert_eq!(credited(&before), flowtracer::flow::roles::share_count(0.4, before.plan.spans.response.len()));
    // The status bar names what happened: the document's first result is its analysis.
    let status = h.state().model.status.clone();
    assert!(status.contains(" · analysed in ") && !status.contains("re-scored"), "{status}");
    h.get_by_role_and_label(Role::Slider, "fraction").set_value_accesskit(0.1);
    h.run();
    let status = h.state().model.status.clone();
    assert!(status.contains(" · re-scored in ") && status.contains("(credit only;"), "{status}");
    let after = h.state().model.docs[0].analysis.clone().unwrap();
    assert_eq!(h.state().model.params.credit.fraction, 0.1);
    assert_eq!(credited(&after), flowtracer::flow::roles::share_count(0.1, after.plan.spans.response.len()));
    // The diff mode knows which tokens changed.
    assert!(!h.state().ui.marks.changed.is_empty());
    assert_eq!(h.state().ui.marks.changed.len(), credited(&before) - credited(&after));
    h.get_by_label_contains("diff (");
}

#[test]
fn search_finds_tokens_and_jumps_to_them() {
    let mut h = harness();
    let doc = &h.state().model.docs[0];
    let needle = doc.trace.tokens[doc.spans.answer.start].trim().to_string();
    let expected: Vec<usize> = (0..doc.n()).filter(|&k| doc.trace.tokens[k].contains(&needle)).collect();
    let field = h.get_by_role(Role::TextInput);
    field.click();
    field.type_text(&needle);
    h.run();
    assert_eq!(h.state().ui.marks.hits.len(), expected.len());
    h.get_by_label(&format!("{} matches", expected.len()));
    h.get_by_role_and_label(Role::Button, "match").click();
    h.run();
    assert_eq!(h.state().ui.marks.selected, Some(expected[0]));
    h.get_by_role_and_label(Role::Button, "hub").click();
    h.run();
    let hubs = &h.state().model.docs[0].analysis.as_ref().unwrap().result.hubs;
    assert!(hubs.contains(&h.state().ui.marks.selected.unwrap()));
}

#[test]
fn switches_between_views() {
    let mut h = harness();
    h.get_by_label("Backbone").click();
    h.run();
    assert_eq!(h.state().ui.view, View::Backbone);
    h.get_by_label_contains("backbone: ");
    h.get_by_label_contains("path 1 · ");
    h.get_by_label("Matrix").click();
    h.run();
    assert_eq!(h.state().ui.view, View::Matrix);
    h.get_by_label("reset zoom");
    h.get_by_label("0");
    h.get_by_label("log").click();
    h.run();
    assert!(h.state().ui.matrix.log_scale);
    h.get_by_label("10^-4 × top");
    h.get_by_label("Compare").click();
    h.run();
    h.get_by_label("pin as baseline").click();
    h.run();
    assert!(h.state().model.baseline.is_some());
    h.get_by_label_contains("same trace: credit differs on 0 tokens");
    h.get_by_label("Run").click();
    h.run();
    h.get_by_label_contains("No run open");
    h.get_by_label("Text").click();
    h.run();
    assert_eq!(h.state().ui.view, View::Text);
}

#[test]
fn picking_spans_by_selection_retargets_the_flow() {
    let mut h = harness();
    let old = h.state().model.docs[0].spans;
    // Use the token before the answer as the new answer: the flow now ends there.
    let k = old.answer.start - 1;
    h.state_mut().apply(flowtracer::app::Command::Select { token: k, extend: false });
    h.get_by_label("use as answer").click();
    h.run();
    let d = &h.state().model.docs[0];
    assert_eq!(d.spans.answer, flowtracer::Span::new(k, k + 1), "status: {}", h.state().model.status);
    let a = d.analysis.as_ref().unwrap();
    assert_eq!(a.plan.spans.answer.start, k);
    // The flow now ends at the position that wrote that token (the sink, `answer.sink`).
    assert_eq!(a.result.spans.answer, flowtracer::Span::new(k - 1, k));
    assert!((a.result.flow[k - 1] - 1.0).abs() < 1e-9);
    h.get_by_label("file spans").click();
    h.run();
    assert_eq!(h.state().model.docs[0].spans, old);
}

/// A wgpu adapter for rendering snapshots, or why there is none.
fn adapter() -> Result<String, String> {
    use eframe::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&instance, None)).map_err(|e| e.to_string())?;
    Ok(format!("{:?}", adapter.get_info().name))
}

#[test]
fn views_render_like_their_snapshots() {
    let Some(name) = common::required_or_skip(adapter(), "FLOWTRACER_REQUIRE_GPU", "wgpu adapter", "; install mesa-vulkan-drivers") else { return };
    eprintln!("rendering snapshots on {name}");
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .wgpu()
        .build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), FlowApp::sample_synchronous());
    h.run();
    // The status bar shows a timing: mask its row so snapshots do not depend on the machine's speed.
    fn snapshot(h: &mut Harness<'static, FlowApp>, name: &str) {
        let status = h.get_by_label_contains(" · analysed in ").rect();
        h.mask(egui::Rect::from_min_max(egui::pos2(0.0, status.top() - 2.0), egui::pos2(1280.0, status.bottom() + 2.0)));
        h.snapshot(name);
    }
    snapshot(&mut h, "text_view");
    h.get_by_label("Backbone").click();
    h.run();
    snapshot(&mut h, "backbone_view");
    h.get_by_label("Matrix").click();
    h.run();
    snapshot(&mut h, "matrix_view");
}

#[test]
fn a_rescore_that_reuses_the_matrix_equals_a_full_analysis() {
    use flowtracer::app::worker::analyse;
    let trace = flowtracer::sample_trace();
    let cancel = flowtracer::Cancel::default();
    let first = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, flowtracer::Params::default(), None, &cancel).unwrap();
    let mut p = flowtracer::Params::default();
    p.credit.fraction = 0.2;
    p.backbone.max_paths = 3;
    let reused = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, p.clone(), Some(&first), &cancel).unwrap();
    let full = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, p, None, &cancel).unwrap();
    assert_eq!(reused.result.credit, full.result.credit);
    assert_eq!(reused.result.backbone, full.result.backbone);
    assert_eq!(reused.result.layers, full.result.layers);
    assert_eq!(reused.matrix.data, full.matrix.data);
}

/// A change of the credit parameters alone re-runs step 9 only, over the earlier solution: the
/// same numbers as a full analysis, the matrix shared, and the provenance says so.
#[test]
fn a_credit_change_reruns_only_the_credit_and_equals_a_full_analysis() {
    use flowtracer::app::worker::analyse;
    let trace = flowtracer::sample_trace();
    let cancel = flowtracer::Cancel::default();
    let first = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, flowtracer::Params::default(), None, &cancel).unwrap();
    let mut p = flowtracer::Params::default();
    (p.credit.fraction, p.credit.gamma, p.credit.normalize_mean) = (0.2, 2.5, true);
    let recredited = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, p.clone(), Some(&first), &cancel).unwrap();
    let full = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, p.clone(), None, &cancel).unwrap();
    assert_eq!(recredited.result.credit, full.result.credit);
    assert_ne!(recredited.result.credit, first.result.credit, "the credit did change");
    assert_eq!((&recredited.result.throughput, &recredited.result.backbone, &recredited.result.hubs), (&full.result.throughput, &full.result.backbone, &full.result.hubs));
    assert!(std::sync::Arc::ptr_eq(&recredited.matrix, &first.matrix), "the matrix is shared, not copied");
    assert!(recredited.result.provenance.reused_solution && recredited.result.provenance.summary().contains("credit only"));

    // A role change re-runs the roles and the credit, a backbone change the backbone too, each
    // over the same solution and matrix, and each equals a full analysis.
    let resumed = |p: &flowtracer::Params, from: &flowtracer::app::document::Analysis, rerun: &str| {
        let got = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, p.clone(), Some(from), &cancel).unwrap();
        let full = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, p.clone(), None, &cancel).unwrap();
        let r = (&got.result, &full.result);
        assert_eq!((&r.0.backbone, &r.0.hubs, &r.0.checkpoints, &r.0.far_sources, &r.0.credit), (&r.1.backbone, &r.1.hubs, &r.1.checkpoints, &r.1.far_sources, &r.1.credit));
        assert!(std::sync::Arc::ptr_eq(&got.matrix, &first.matrix) && got.knockout == full.knockout);
        let summary = got.result.provenance.summary();
        assert!(got.result.provenance.reused_solution && summary.contains(&format!("({rerun}; the solution reused")), "{summary}");
        got
    };
    p.roles.hub_fraction = 0.15;
    let reroled = resumed(&p, &recredited, "roles and credit");
    assert_ne!(reroled.result.hubs, recredited.result.hubs, "the hubs did change");
    p.backbone.max_paths = 2;
    let rebackboned = resumed(&p, &reroled, "backbone, roles and credit");
    assert!(rebackboned.result.backbone.len() <= 2 && reroled.result.backbone.len() > 2);

    // Another sink solves again, on the same matrix.
    p.answer.sink = flowtracer::params::Sink::Tokens;
    let solved = analyse(&flowtracer::backend::Cpu, &trace, trace.spans, p, Some(&rebackboned), &cancel).unwrap();
    let prov = &solved.result.provenance;
    assert!(!prov.reused_solution && prov.reused_aggregation && std::sync::Arc::ptr_eq(&solved.matrix, &first.matrix));
}

/// A fine-tune small enough for a test: a tiny policy, a few steps, traces every step.
fn tiny_form(h: &mut Harness<'static, FlowApp>, name: &str, steps: usize) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("flowtracer-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let f = &mut h.state_mut().model.train_form;
    f.cfg.task = flowtracer::rl::task::Task::Parity;
    f.cfg.model = flowtracer::rl::model::Config::tiny();
    f.cfg.sft_steps = Some(5);
    f.cfg.sft_batch = 8;
    f.cfg.steps = steps;
    f.cfg.prompts_per_step = 2;
    f.cfg.group = 4;
    f.cfg.eval_every = 1;
    f.cfg.eval_size = 4;
    f.cfg.checkpoint_every = 1;
    f.root = root.clone();
    f.modes = [true, true, false, false, false];
    root
}

/// Frames until the panel's runs have all finished.
fn wait_for_training(h: &mut Harness<'static, FlowApp>) {
    let start = std::time::Instant::now();
    while h.state().model.training.as_ref().is_some_and(|t| t.running()) {
        assert!(start.elapsed().as_secs() < 300, "training did not finish");
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.step();
    }
    h.step();
}

#[test]
fn the_train_panel_trains_modes_in_the_background_and_opens_their_traces() {
    let mut h = harness();
    h.get_by_label("Train").click();
    h.run();
    let root = tiny_form(&mut h, "train-panel", 2);
    h.get_by_label("Start").click();
    h.step();
    assert!(h.state().model.training.is_some(), "Start began a fine-tune");
    wait_for_training(&mut h);
    let t = h.state().model.training.as_ref().unwrap();
    assert_eq!(t.runs.len(), 2);
    for r in &t.runs {
        assert_eq!(r.error, None);
        assert_eq!(r.phase, "done");
        // Live plots: a reward per step; held-out accuracy at the start and after each step.
        assert_eq!(r.reward.iter().map(|p| p[0]).collect::<Vec<_>>(), vec![1.0, 2.0], "{:?}", r.mode);
        assert_eq!(r.accuracy.len(), 3);
        assert!(!r.traces.is_empty());
        assert!(r.dir.starts_with(&root) && r.dir.join("metrics.jsonl").exists());
    }
    // A trace the run wrote opens in the viewer and is analysed there.
    let trace = t.runs[1].traces.last().unwrap().clone();
    let label = trace.strip_prefix(&t.runs[1].dir).unwrap().display().to_string().trim_end_matches(".safetensors").to_string();
    h.get_all_by_label(&label).last().unwrap().click();
    h.run();
    assert_eq!(h.state().ui.view, View::Text);
    let doc = h.state().model.doc().unwrap();
    assert_eq!(doc.trace.path, trace);
    assert!(doc.analysis.is_some() || doc.error.is_some());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_train_panel_cancels_and_the_run_resumes() {
    let mut h = harness();
    h.state_mut().ui.view = View::Train;
    h.run();
    let root = tiny_form(&mut h, "train-cancel", 1000);
    h.get_by_label("Start").click();
    h.step();
    // Let the runs get past their warm start, then cancel.
    let start = std::time::Instant::now();
    while h.state().model.training.as_ref().unwrap().runs.iter().any(|r| r.reward.is_empty()) {
        assert!(start.elapsed().as_secs() < 300, "no step finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.step();
    }
    h.get_by_label("Cancel").click();
    h.step();
    wait_for_training(&mut h);
    for r in &h.state().model.training.as_ref().unwrap().runs {
        assert_eq!(r.phase, "cancelled (resumable)");
        let steps = std::fs::read_to_string(r.dir.join("metrics.jsonl")).unwrap().lines().count();
        assert!(steps < 1000, "{steps} steps ran after the cancel");
    }
    let _ = std::fs::remove_dir_all(root);
}

/// The sample run's last step, whose checkpoint the run keeps: the what-if can regenerate it.
const RUN_TRACE: &str = "sample_traces/policy_run/step_000030/sample_0000.safetensors";

fn run_trace_harness(wgpu: bool) -> Harness<'static, FlowApp> {
    let mut app = FlowApp::new(vec![], flowtracer::Params::default(), flowtracer::app::recent::Recent::in_memory());
    app.model.rescoring.synchronous = true;
    app.apply(flowtracer::app::Command::Open(RUN_TRACE.into()));
    let mut b = Harness::builder().with_size(egui::vec2(1280.0, 800.0));
    if wgpu {
        b = b.wgpu();
    }
    let mut h = b.build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), app);
    h.run();
    h
}

/// The reasoning token whose knock-out loses the most path mass.
fn heaviest_reasoning_token(h: &Harness<'static, FlowApp>) -> usize {
    let d = &h.state().model.docs[0];
    let a = d.analysis.as_ref().unwrap();
    (a.plan.spans.response.start..a.plan.spans.answer.start).max_by(|&x, &y| a.knockout[x].total_cmp(&a.knockout[y])).unwrap()
}

#[test]
fn knock_out_and_what_if_from_the_inspector() {
    use flowtracer::app::document::Score;
    let mut h = run_trace_harness(false);
    assert!(h.state().model.docs[0].checkpoint.is_ok(), "{:?}", h.state().model.docs[0].checkpoint);
    let k = heaviest_reasoning_token(&h);
    click_token(&mut h, k);
    h.get_by_label(&format!("What if #{k} were gone?"));

    // Knock-out: the graph without the token, re-solved; the inspector shows what was lost.
    h.get_by_label("knock out").click();
    h.run();
    let a = h.state().model.docs[0].analysis.clone().unwrap();
    let Some(Ok(ko)) = &h.state().model.docs[0].knock_out else { panic!("no knock-out shown") };
    assert_eq!(ko.removed, vec![k]);
    assert!((ko.mass_lost - a.knockout[k]).abs() < 1e-9, "the inspector's number is the colour's number");
    // The knock-out's "path mass lost" (and the token's own "knock-out loss", the same number).
    assert!(h.query_all_by_label(&format!("{:.1}%", 100.0 * ko.mass_lost)).count() >= 1);
    h.get_by_label("path mass lost");

    // Colour by knock-out loss: every response token has its loss, computed with the analysis.
    h.state_mut().ui.score = Score::KnockOut;
    h.run();
    assert_eq!(a.knockout.len(), a.result.reach.len());
    assert!(a.knockout[k] > 0.0);

    // What if: hidden from the policy that wrote the trace, the answer regenerated.
    h.get_by_label("hide and regenerate").click();
    h.run();
    let Some(Ok(w)) = &h.state().model.docs[0].what_if else { panic!("no what-if shown: {:?}", h.state().model.docs[0].what_if.as_ref().map(|r| r.as_ref().err())) };
    assert_eq!(w.hidden, vec![k]);
    let original = flowtracer::rl::task::Task::stated_answer(&h.state().model.docs[0].trace.tokens[a.plan.spans.response.start..].concat()).map(str::to_string);
    assert_eq!(w.before, original);
    assert!(w.logprob_before <= 0.0 && w.logprob_after <= 0.0);
    h.get_by_label(if w.before == w.after { "the answer stays" } else { "the answer changes" });

    // Kept as a trace of its own: opened beside the original, which becomes the baseline.
    h.get_by_label("keep as trace").scroll_to_me();
    h.run();
    h.get_by_label("keep as trace").click();
    h.run();
    let (s, view) = (&h.state().model, h.state().ui.view);
    assert_eq!(s.docs.len(), 2);
    assert_eq!(s.current, 1);
    assert_eq!(view, View::Compare);
    assert_eq!(s.baseline.as_ref().map(|b| b.0), Some(0));
    assert_eq!(s.docs[1].trace.meta.extra.get("what_if_hidden").map(String::as_str), Some(format!("[{k}]").as_str()));
    assert!(s.docs[1].analysis.is_some(), "the regenerated trace is analysed like any other");
}

#[test]
fn what_if_is_offered_only_where_the_policy_is_known() {
    // The bundled sample is a copy outside its run: no run.json above it, no checkpoint.
    let mut h = harness();
    let why = h.state().model.docs[0].checkpoint.clone().unwrap_err();
    assert!(why.contains("run"), "{why}");
    let k = h.state().model.docs[0].analysis.as_ref().unwrap().plan.spans.response.start + 1;
    click_token(&mut h, k);
    h.get_by_label("hide and regenerate").click();
    h.run();
    assert!(h.state().model.docs[0].what_if.is_none(), "a disabled button does nothing");
}

#[test]
fn what_if_renders_like_its_snapshot() {
    let Some(name) = common::required_or_skip(adapter(), "FLOWTRACER_REQUIRE_GPU", "wgpu adapter", "; install mesa-vulkan-drivers") else { return };
    eprintln!("rendering the what-if snapshot on {name}");
    let mut h = run_trace_harness(true);
    // The `5` of the carry step `0+4+1=05`, which the answer 7953 copies.
    let k = 27;
    assert_eq!(h.state().model.docs[0].trace.tokens[k], "5");
    click_token(&mut h, k);
    h.get_by_label("knock out").click();
    h.run();
    h.get_by_label("hide and regenerate").click();
    h.run();
    h.get_by_label("keep as trace").scroll_to_me();
    h.run();
    let status = h.get_by_label_contains("opened ").rect();
    h.mask(egui::Rect::from_min_max(egui::pos2(0.0, status.top() - 2.0), egui::pos2(1280.0, status.bottom() + 2.0)));
    h.snapshot("what_if_view");
}

#[test]
fn colour_by_causal_effect_reads_the_file_and_says_when_it_is_missing() {
    use flowtracer::app::document::Score;
    let mut h = harness();
    h.state_mut().ui.score = Score::CausalEffect;
    h.run();
    h.get_by_label_contains("this trace has no causal effect: showing throughput");

    let dir = common::temp_dir("app-causal");
    let n = 10;
    let effect: Vec<f32> = (0..n).map(|k| k as f32 - 4.0).collect();
    let path = dir.join("probed.safetensors");
    common::chain_builder(n, flowtracer::trace::Dtype::F32, vec![n, n]).causal_effect(effect.clone()).meta(flowtracer::trace::ANSWER_CHANGED, "[5]").write(&path).unwrap();
    h.state_mut().apply(flowtracer::app::Command::Open(path.clone()));
    h.run();
    let s = &h.state().model;
    let d = &s.docs[s.current];
    let values = Score::CausalEffect.values(&d.trace, d.analysis.as_ref().unwrap()).unwrap();
    // Harm is coloured: a token whose hiding made the answer likelier shows as no effect.
    assert_eq!(values, effect.iter().map(|&e| (e as f64).max(0.0)).collect::<Vec<_>>());
    assert!(h.query_by_label_contains("this trace has no causal effect").is_none());
    // Beside the colours, how well throughput ranks the tokens by the effect (response 2..9).
    let tau = &d.analysis.as_ref().unwrap().result.throughput;
    let rho = flowtracer::fidelity::spearman(&tau[2..9], &effect[2..9].iter().map(|&e| e as f64).collect::<Vec<_>>()).unwrap();
    h.run();
    h.get_by_label_contains(&format!("ρ with throughput {rho:.3} (tokens 2:9)"));
    // The inspector: what hiding the selected token costs, and whether it changed the answer.
    for (token, says) in [(5, "1.000 nats · changes the answer"), (4, "0.000 nats · answer kept")] {
        h.state_mut().apply(flowtracer::app::Command::Select { token, extend: false });
        h.run();
        h.get_by_label(says);
    }
}

#[test]
fn the_sink_is_a_widget_and_rescoring_with_it_moves_the_flow() {
    use flowtracer::params::Sink;
    let mut h = harness();
    let writers = h.state().model.docs[0].analysis.clone().unwrap();
    h.get_by_label("answer sink").click();
    h.run();
    h.get_by_label("the answer tokens themselves").click();
    h.run();
    assert_eq!(h.state().model.params.answer.sink, Sink::Tokens);
    let tokens = h.state().model.docs[0].analysis.clone().unwrap();
    let answer = tokens.plan.spans.answer;
    assert_eq!(tokens.result.spans.answer, answer, "the sink is the answer itself");
    assert_eq!(writers.result.spans.answer, flowtracer::Span::new(answer.start - 1, answer.end - 1));
    assert!((tokens.result.answer_inflow() - 1.0).abs() < 1e-9 && (writers.result.answer_inflow() - 1.0).abs() < 1e-9);
    assert_ne!(tokens.result.throughput, writers.result.throughput);
}

/// The Run view's rows are filled in off the UI thread, through the app's backend and with the
/// current parameters; new parameters fill them in again.
#[test]
fn a_run_folder_is_analysed_in_the_background_with_the_current_parameters() {
    let mut app = FlowApp::new(vec![], flowtracer::Params::default(), flowtracer::app::recent::Recent::in_memory());
    app.model.rescoring.synchronous = true;
    app.apply(flowtracer::app::Command::Open("sample_traces/policy_run".into()));
    assert_eq!(app.ui.view, View::Run);
    let wait = |app: &mut FlowApp| {
        let started = std::time::Instant::now();
        while app.model.run.as_mut().unwrap().poll() {
            assert!(started.elapsed().as_secs() < 120, "the run's rows were not filled in");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait(&mut app);
    let rows = &app.model.run.as_ref().unwrap().rows;
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r.n.is_some() && r.step.is_some() && r.status.as_ref().is_some_and(|s| s.is_ok())), "{rows:?}");
    // Layers a 3-layer policy lacks: every row fails with the pipeline's own error.
    let mut p = flowtracer::Params::default();
    p.aggregate.layers = Some([5, 9]);
    app.apply(flowtracer::app::Command::SetParams(p));
    wait(&mut app);
    for r in &app.model.run.as_ref().unwrap().rows {
        let e = r.status.clone().unwrap().unwrap_err();
        assert!(e.contains("layers"), "{e}");
        assert!(r.broken().is_none(), "the file opened: it can still be shown");
    }
}

/// A trace file of `tokens` in a temporary folder: each token attends to the one before it and to
/// the first, the question its first two tokens, the answer its last.
fn chain_trace(folder: &str, name: &str, tokens: &[String], meta: &[(&str, &str)]) -> (common::TempDir, std::path::PathBuf) {
    use flowtracer::trace::{AttentionInput, Dtype, TraceBuilder};
    let n = tokens.len();
    let mut values = vec![0f32; n * n];
    values[0] = 1.0;
    for k in 1..n {
        values[k * n + k - 1] = 0.75;
        values[k * n] += 0.25;
    }
    let dir = common::temp_dir(folder);
    let path = dir.join(name);
    let attention = AttentionInput { shape: vec![n, n], values, dtype: Dtype::F32 };
    let mut b = TraceBuilder::new(tokens.to_vec(), flowtracer::Span::new(0, 2), flowtracer::Span::new(2, n), flowtracer::Span::new(n - 1, n), attention);
    for (k, v) in meta {
        b = b.meta(k, v);
    }
    b.write(&path).unwrap();
    (dir, path)
}

/// Byte-level BPE tokens show as their text (spaces, a line break, a character split across
/// tokens); the View menu decodes them another way and back; search finds the text.
#[test]
fn subword_tokens_show_as_text_and_the_view_menu_switches_the_decoding() {
    use flowtracer::subword::Tokenizer;
    let mut h = harness();
    // (é is C3 A9, split across two tokens as a trained byte-level BPE splits it)
    let tokens: Vec<String> = ["Question", "Ġ:", "Ġa", "Ġtrain", "Ċ", "Let", "Ġcaf", "Ã", "©", "Ġ72"].iter().map(|s| s.to_string()).collect();
    let (_dir, path) = chain_trace("app-subword", "bpe.safetensors", &tokens, &[]);
    h.state_mut().apply(flowtracer::app::Command::Open(path));
    h.run();
    let d = &h.state().model.docs[h.state().model.current];
    assert_eq!(d.tokenizer, Tokenizer::ByteLevel);
    assert_eq!(d.text.concat(), "Question : a train\nLet café 72");
    assert_eq!(d.trace.tokens, tokens, "the raw tokens stay");
    // The text view lays out the decoded text: the token after the line break starts line 2.
    let (first, after_break) = (h.state().ui.text.rect_of(0).unwrap(), h.state().ui.text.rect_of(5).unwrap());
    assert!(after_break.top() > first.bottom(), "`Let` is on the line after Ċ");
    h.state_mut().apply(flowtracer::app::Command::Search("é".into()));
    assert_eq!(h.state().ui.marks.hits.iter().copied().collect::<Vec<_>>(), vec![7], "the token that starts é");
    // The inspector keeps the raw token as its heading and shows the text beside it.
    h.state_mut().apply(flowtracer::app::Command::Select { token: 6, extend: false });
    h.run();
    h.get_by_label("#6 \"Ġcaf\"");
    h.get_by_label("text \" caf\"");

    h.get_by_label("View").click();
    h.run();
    h.get_by_label("raw").click();
    h.run();
    let d = &h.state().model.docs[h.state().model.current];
    assert_eq!((d.tokenizer, &d.text), (Tokenizer::Raw, &tokens));
    h.get_by_label_contains("tokens shown as raw text");
}

/// The Backbone view's step mode draws the step graph of the analysis on screen and says how
/// much of the flow its backbone carries; selecting a step shows its tokens in the text view.
#[test]
fn the_step_view_shows_the_step_graph_and_a_step_selects_its_tokens() {
    let mut h = harness();
    h.state_mut().ui.view = View::Backbone;
    h.run();
    h.get_by_label("steps").click();
    h.step();
    assert!(h.state().ui.backbone.steps);
    // The graph is made off the UI thread; the view shows a spinner until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while h.query_by_label_contains("the step backbone carries").is_none() {
        assert!(std::time::Instant::now() < deadline, "the step graph never arrived");
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.step();
    }
    let step = {
        let d = &h.state().model.docs[0];
        let a = d.analysis.as_ref().unwrap();
        let segs = flowtracer::flow::steps::segments(&d.text, a.result.spans, &a.plan.params.steps, None);
        assert!(!segs.is_empty());
        segs[0]
    };
    h.state_mut().apply(flowtracer::app::Command::SelectSpan(step));
    h.run();
    assert_eq!(h.state().ui.view, View::Text);
    assert_eq!(h.state().ui.marks.range, Some((step.start, step.end - 1)));
}

/// A trace of more lines than a step graph takes: the steps view says how many segments it
/// joined, and to how many steps.
#[test]
fn the_step_view_says_when_it_joined_lines_into_steps() {
    let mut h = harness();
    let max_steps = flowtracer::Params::default().steps.max_steps;
    let lines = max_steps + 100;
    let mut tokens: Vec<String> = vec!["Q".into(), "q".into()];
    tokens.extend(std::iter::repeat_n("a\n".to_string(), lines));
    tokens.push("=".into());
    let (_dir, path) = chain_trace("app-many-lines", "lines.safetensors", &tokens, &[]);
    h.state_mut().apply(flowtracer::app::Command::Open(path));
    h.state_mut().ui.view = View::Backbone;
    h.run();
    h.get_by_label("steps").click();
    h.step();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while h.query_by_label_contains("the step backbone carries").is_none() {
        assert!(std::time::Instant::now() < deadline, "the step graph never arrived");
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.step();
    }
    h.get_by_label_contains(&format!("segments, joined up to 2 at a time to keep to {max_steps} steps)"));
}

/// A trace whose `segments` metadata cannot be read keeps its analysis; the step view says which
/// file and what is wrong with it, as the export does (it had shown the error's Rust debug form).
#[test]
fn the_step_view_names_a_trace_whose_segments_cannot_be_read() {
    let mut h = harness();
    let tokens: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let (_dir, path) = chain_trace("app-bad-segments", "bad_steps.safetensors", &tokens, &[("segments", "3:5")]);
    h.state_mut().apply(flowtracer::app::Command::Open(path));
    h.state_mut().ui.view = View::Backbone;
    h.run();
    h.get_by_label("steps").click();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let said = "bad_steps.safetensors: metadata `segments` = `3:5` is not a JSON list";
    while h.query_by_label_contains(said).is_none() {
        assert!(std::time::Instant::now() < deadline, "the step view never named the trace's segments");
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.step();
    }
    assert!(h.query_by_label_contains("DataError").is_none());
}

/// The sample's app as on a desktop without a native file dialog: File's actions open the in-app
/// browser. (egui_file's path field has no accessible name: the check would fail on its widget.)
fn harness_without_native_dialogs() -> Harness<'static, FlowApp> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .with_accessibility_check(false)
        .build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), FlowApp::sample_synchronous());
    h.run();
    h.state_mut().ui.native_dialogs = false;
    h
}

/// Without a native file dialog (no XDG portal, no zenity: a bare X server), File → Open trace
/// opens the in-app browser, says so, and opens the file picked in it.
#[test]
fn without_a_native_dialog_open_trace_uses_the_in_app_browser() {
    let mut h = harness_without_native_dialogs();
    h.get_by_label("File").click();
    h.run();
    h.get_by_label("Open trace…").click();
    h.run();
    assert!(h.state().ui.file_dialog.is_some(), "the built-in browser is open");
    h.get_by_label_contains("using the built-in browser");
    let path = std::fs::canonicalize("sample_traces/policy_run/step_000030/sample_0000.safetensors").unwrap();
    // Go to its folder (as typing it would), click the file in the list, then Open.
    h.state_mut().ui.file_dialog.as_mut().unwrap().dialog.set_path(path.parent().unwrap());
    h.run();
    h.get_by_label_contains("sample_0000.safetensors").click();
    h.run();
    h.get_by_label("Open").click();
    h.run();
    h.run();
    assert!(h.state().ui.file_dialog.is_none(), "it closes once a file is picked");
    let m = &h.state().model;
    assert_eq!(m.docs[m.current].trace.path, path, "the picked trace is open");
}

/// The in-app browser's save dialog does not ask before it writes over a file (a native one
/// does): the app asks, and keeps the file unless told to replace it.
#[test]
fn the_in_app_browser_asks_before_a_save_replaces_a_file() {
    let dir = common::temp_dir("app-replace");
    let theirs = dir.join("params.toml");
    std::fs::write(&theirs, "# mine\n").unwrap();
    let mut h = harness_without_native_dialogs();
    for answer in ["Keep it", "Replace"] {
        h.get_by_label("File").click();
        h.run();
        h.get_by_label("Save parameters…").click();
        h.run();
        // Its default name is params.toml: in this folder, a file of the user's.
        h.state_mut().ui.file_dialog.as_mut().unwrap().dialog.set_path(&dir);
        h.run();
        h.get_by_label("Save").click();
        h.run();
        h.get_by_label_contains("already exists. Replace it?");
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "# mine\n", "nothing written before the answer");
        h.get_by_label(answer).click();
        h.run();
        h.run();
        assert!(h.state().ui.replace.is_none());
    }
    let saved = std::fs::read_to_string(&theirs).unwrap();
    assert!(saved.contains("[credit]"), "replaced once told to: {saved}");
}

/// An open run folder is watched: a trace written into a new step folder, and a new line of
/// `metrics.jsonl`, show up in the Run view without reopening it.
#[test]
fn a_run_folder_gets_a_new_step_while_open_and_the_run_view_shows_it() {
    let dir = common::temp_dir("app-live-run");
    let run = dir.join("run");
    std::fs::create_dir_all(run.join("step_000010")).unwrap();
    std::fs::copy("sample_traces/policy_run/step_000010/sample_0000.safetensors", run.join("step_000010/sample_0000.safetensors")).unwrap();
    std::fs::write(run.join("metrics.jsonl"), "{\"step\": 10, \"reward\": 0.25}\n").unwrap();
    let mut h = harness();
    h.state_mut().apply(flowtracer::app::Command::Open(run.clone()));
    h.state_mut().ui.view = View::Run;
    h.step();
    let rows = |h: &Harness<'static, FlowApp>| h.state().model.run.as_ref().map_or(0, |r| r.rows.len());
    assert_eq!(rows(&h), 1);
    assert!(h.state().model.run.as_ref().unwrap().watching(), "the folder is watched");

    // A new step, written as trainers do (a temporary, then a rename), and a new metrics line.
    std::fs::create_dir_all(run.join("step_000020")).unwrap();
    std::fs::copy("sample_traces/policy_run/step_000030/sample_0000.safetensors", run.join("step_000020/.sample_0000.tmp")).unwrap();
    std::fs::rename(run.join("step_000020/.sample_0000.tmp"), run.join("step_000020/sample_0000.safetensors")).unwrap();
    std::fs::write(run.join("metrics.jsonl"), "{\"step\": 10, \"reward\": 0.25}\n{\"step\": 20, \"reward\": 0.5}\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rows(&h) < 2 || h.state().model.run.as_ref().unwrap().rows.iter().any(|r| r.status.is_none()) {
        assert!(std::time::Instant::now() < deadline, "the new trace did not appear in the Run view");
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.step(); // (one frame: the Run view asks for frames while its folder changes)
    }
    h.step();
    let m = h.state().model.run.as_ref().unwrap();
    assert!(m.rows[1].relative.contains("step_000020"), "{}", m.rows[1].relative);
    assert_eq!(m.rows[1].status, Some(Ok("ok")));
    assert_eq!(m.run.metrics.len(), 2, "the new metrics line is read");
    h.get_by_label_contains("2 traces · watching the folder");
}

/// Zoomed in on a trace longer than the overview texture, the window shown is reduced again at
/// one pixel per token: its values are the matrix's own entries, not block maxima.
#[test]
fn the_matrix_view_shows_a_zoomed_window_at_full_resolution() {
    use flowtracer::app::views::matrix::{self, Layer, MAX_TEXTURE, Window};
    let spec = flowtracer::synth::SynthSpec { seed: 7, target_tokens: 2000, layers: 1, heads: 1, dtype: flowtracer::trace::Dtype::F16, rank: 2, no_answer: false };
    let trace = flowtracer::Trace::from_bytes(flowtracer::synth::synth_trace(&spec).to_bytes(), std::path::Path::new("long.safetensors")).unwrap();
    let n = trace.n();
    assert!(n > MAX_TEXTURE);
    let mut app = FlowApp::new(vec![flowtracer::app::document::Document::new(trace)], flowtracer::Params::default(), flowtracer::app::recent::Recent::in_memory());
    app.model.rescoring.synchronous = true;
    app.model.rescore_now();
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), app);
    h.run();
    h.get_by_label("Matrix").click();
    h.run();
    assert_eq!(h.state().ui.matrix.detail(), None, "the whole matrix is the overview");
    h.get_by_label_contains("tokens a pixel; zoom in for full resolution");

    // A window of 300 tokens a side, the way a zoom leaves it.
    let (x, y, w) = (0.5f32, 0.7f32, 300.0 / n as f32);
    h.state_mut().ui.matrix.view = egui::Rect::from_min_size(egui::pos2(x, y), egui::vec2(w, w));
    h.run();
    let (win, per_pixel) = h.state().ui.matrix.detail().expect("a zoomed window gets its own texture");
    assert_eq!(per_pixel, 1.0);
    assert_eq!(win, Window::of(h.state().ui.matrix.view, n));
    h.get_by_label_contains("at full resolution");

    let d = &h.state().model.docs[0];
    let a = d.analysis.as_ref().unwrap();
    let vals = matrix::downsample_window(&d.trace, a, Layer::Aggregated, win, win.w);
    for (r, k) in (win.y0..win.y0 + win.w).enumerate() {
        for (c, i) in (win.x0..win.x0 + win.w).enumerate() {
            let want = if i < k { a.matrix.get(k, i) } else { 0.0 };
            assert_eq!(vals[r * win.w + c], want, "query {k}, key {i}");
        }
    }
    // Block maxima, entry by entry, as the definitions give them: W' and φ of a window, and the
    // whole matrix as a window is the overview.
    use flowtracer::flow::conserve::{conserved, edge_flow};
    let r = &a.result;
    for (layer, win, s) in [(Layer::Conserved, win, 77), (Layer::EdgeFlow, Window { x0: 3, y0: 900, w: 1000 }, 300), (Layer::EdgeFlow, Window::all(n), 97), (Layer::Slab(0, 0), Window::all(n), 64)] {
        let mut want = vec![0f32; s * s];
        let mut row = vec![0f32; n];
        for k in win.y0..win.y0 + win.w {
            d.trace.attention.row(0, 0, k, &mut row);
            for i in win.x0..(win.x0 + win.w).min(k + 1) {
                let v = match layer {
                    Layer::Conserved => conserved(&a.matrix, &r.reach, r.spans.answer, i, k) as f32,
                    Layer::EdgeFlow => edge_flow(&a.matrix, &r.reach, &r.flow, r.spans.answer, i, k) as f32,
                    _ => row[i],
                };
                let cell = &mut want[(k - win.y0) * s / win.w * s + (i - win.x0) * s / win.w];
                *cell = cell.max(v);
            }
        }
        assert_eq!(matrix::downsample_window(&d.trace, a, layer, win, s), want, "{layer:?} over {win:?} at {s}");
    }
}

/// A system font goes after the bundled ones (so it only draws what they lack, such as CJK), the
/// first readable one of the candidates; none found leaves the bundled fonts as they are.
#[test]
fn a_system_font_is_the_last_fallback() {
    use flowtracer::app::{SYSTEM_FONT, first_readable, fonts_with};
    let dir = common::temp_dir("system-font");
    let font = dir.join("fallback.ttf");
    std::fs::write(&font, std::fs::read("assets/fonts/DejaVuSansMono.ttf").unwrap()).unwrap();
    let found = first_readable(&[dir.join("missing.ttc"), font.clone()]).expect("the second candidate reads");
    assert_eq!(found.0, font);
    let fonts = fonts_with(Some(found));
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        assert_eq!(fonts.families[&family].last().map(String::as_str), Some(SYSTEM_FONT), "{family:?}");
    }
    assert!(!fonts_with(first_readable(&[dir.join("missing.ttc")])).font_data.contains_key(SYSTEM_FONT));
    let ctx = egui::Context::default();
    ctx.set_fonts(fonts);
    let mut out = ctx.run_ui(Default::default(), |ui| {
        ui.label("問題：列車 3 時に出発");
    });
    out.textures_delta.clear();
    let _ = std::fs::remove_dir_all(dir);
}

/// The Run table lays out only the rows on screen: in a run of 400 traces the first row is drawn
/// and the last is not, until the table is scrolled to it. (A frame then costs the same for 10 000
/// traces as for 10; `flowtracer bench --ui --run 10000` measures it.)
#[test]
fn the_run_table_lays_out_only_its_visible_rows() {
    let dir = common::temp_dir("app-long-run");
    let run = dir.join("run");
    for i in 0..400 {
        let step = run.join(format!("step_{:06}", i / 100));
        std::fs::create_dir_all(&step).unwrap();
        std::fs::copy("sample_traces/policy_run/step_000010/sample_0000.safetensors", step.join(format!("sample_{:04}.safetensors", i % 100))).unwrap();
    }
    let mut h = harness();
    h.state_mut().apply(flowtracer::app::Command::Open(run.clone()));
    h.state_mut().ui.view = View::Run;
    h.step();
    assert_eq!(h.state().model.run.as_ref().unwrap().rows.len(), 400);
    h.get_by_label("step_000000/sample_0000.safetensors");
    assert!(h.query_by_label("step_000003/sample_0099.safetensors").is_none(), "a row far below the fold is not laid out");
    // Scrolled to the end, the last row is there and the first is not.
    h.get_by_label("step_000000/sample_0000.safetensors").hover();
    for _ in 0..40 {
        h.event(egui::Event::MouseWheel { unit: egui::MouseWheelUnit::Page, delta: egui::vec2(0.0, -1.0), phase: egui::TouchPhase::Move, source: egui::MouseWheelSource::Wheel, modifiers: Default::default() });
        h.step();
    }
    h.get_by_label("step_000003/sample_0099.safetensors");
    assert!(h.query_by_label("step_000000/sample_0000.safetensors").is_none());
    let _ = std::fs::remove_dir_all(dir);
}

/// In a window too narrow for the run table, the table scrolls sideways and its last column's
/// "open" comes into view left of the side panel (it had been cut off beyond the view's edge).
#[test]
fn a_narrow_run_table_scrolls_sideways_to_its_open_buttons() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), FlowApp::sample_synchronous());
    h.state_mut().apply(flowtracer::app::Command::Open("sample_traces/policy_run".into()));
    h.state_mut().ui.view = View::Run;
    h.run_steps(3);
    let panel = h.get_by_label("Inspector").rect().left();
    let first_open = |h: &Harness<'static, FlowApp>| h.get_all_by_label("open").next().expect("an open button").rect();
    assert!(first_open(&h).right() > panel, "the table is wider than the view here: nothing to scroll");
    h.get_by_label("tokens").hover();
    for _ in 0..10 {
        h.event(egui::Event::MouseWheel { unit: egui::MouseWheelUnit::Point, delta: egui::vec2(-60.0, 0.0), phase: egui::TouchPhase::Move, source: egui::MouseWheelSource::Wheel, modifiers: Default::default() });
        h.step();
    }
    h.run_steps(3);
    let open = first_open(&h);
    assert!(open.right() <= panel, "the open button ends at x = {}, the side panel starts at {panel}", open.right());
}

/// A run scored on a cluster (`flowtracer.ray`'s Parquet) opens in the Run view like a folder:
/// its rows with the statuses they were scored with, no re-analysis on new parameters, a row
/// whose trace file is here opens it, a row whose file is elsewhere says so, a failed row is
/// marked broken.
#[test]
fn a_run_scored_on_ray_opens_in_the_run_view() {
    let mut h = harness();
    h.state_mut().apply(flowtracer::app::Command::Open("tests/scored/broken_rows.parquet".into()));
    assert_eq!(h.state().ui.view, View::Run);
    h.step();
    {
        let run = h.state().model.run.as_ref().expect("a run is open");
        assert_eq!(run.rows.len(), 17);
        assert_eq!(run.scored.as_deref(), Some(std::path::Path::new("tests/scored/broken_rows.parquet")));
        let ok = run.rows.iter().filter(|r| r.status.as_ref().is_some_and(|s| s.is_ok())).count();
        assert_eq!(ok, 16, "the summary columns of every row but the failed one read: {:?}", run.rows);
        assert!(run.rows.iter().any(|r| r.broken().is_some_and(|e| e.contains("sums to 1.3"))));
        let elsewhere: Vec<&str> = run.rows.iter().filter(|r| r.elsewhere).map(|r| r.relative.as_str()).collect();
        assert_eq!(elsewhere, ["cluster/run/step_000099/sample_0000.safetensors"], "the other sources are this repository's sample traces");
    }
    h.get_by_label("sample_traces/policy_run/step_000010/sample_0000.safetensors");
    h.get_by_label("not here");
    let mut p = flowtracer::Params::default();
    p.aggregate.layers = Some([5, 9]);
    h.state_mut().apply(flowtracer::app::Command::SetParams(p));
    h.step();
    assert!(h.state().model.run.as_ref().unwrap().rows.iter().filter(|r| r.status.as_ref().is_some_and(|s| s.is_ok())).count() == 16, "scored rows keep their statuses");
    // A row opens its trace file.
    let row = h.state().model.run.as_ref().unwrap().rows.iter().position(|r| r.relative == "sample_traces/addition.safetensors").unwrap();
    let path = h.state().model.run.as_ref().unwrap().rows[row].path.clone();
    h.state_mut().apply(flowtracer::app::Command::Open(path));
    assert_eq!(h.state().model.doc().unwrap().trace.path, std::path::Path::new("sample_traces/addition.safetensors"));
}

/// Export view writes the picture of the view on screen: the text view's PNG is the export's
/// credit picture (its size; the title differs), the backbone's and the matrix's are PNGs too
/// (the matrix a pixel per token), and an `.svg` path gets the SVG.
#[test]
fn export_view_writes_the_picture_of_each_view() {
    let dir = common::temp_dir("app-export-view");
    let mut h = harness();
    let picture = |path: &std::path::Path| resvg::tiny_skia::Pixmap::decode_png(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = dir.join("text.png");
    h.state_mut().apply(flowtracer::app::Command::ExportView(text.clone()));
    assert!(h.state().model.status.starts_with("wrote"), "{}", h.state().model.status);
    let credit = picture(&text);
    let export = dir.join("export");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_flowtracer")).args(["--export", export.to_str().unwrap(), "--format", "png", "sample_traces/addition.safetensors"]).status().unwrap();
    assert!(status.success());
    let exported = picture(&export.join("addition.credit.png"));
    assert_eq!((credit.width(), credit.height()), (exported.width(), exported.height()), "the app's text picture is the export's, titled differently");
    h.state_mut().ui.view = View::Backbone;
    h.state_mut().apply(flowtracer::app::Command::ExportView(dir.join("backbone.png")));
    assert_eq!(picture(&dir.join("backbone.png")).width(), 1200);
    // The sample is shorter than the matrix view's texture: a pixel per token.
    let n = h.state().model.docs[0].trace.tokens.len() as u32;
    h.state_mut().ui.view = View::Matrix;
    h.state_mut().apply(flowtracer::app::Command::ExportView(dir.join("matrix.png")));
    let matrix = picture(&dir.join("matrix.png"));
    assert_eq!((matrix.width(), matrix.height()), (n, n));
    h.state_mut().ui.view = View::Text;
    let svg = dir.join("text.svg");
    h.state_mut().apply(flowtracer::app::Command::ExportView(svg.clone()));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A trace taller than the view gets the trace map beside its text: a click at the map's foot
/// shows the trace's end, and a jump to each checkpoint of an 8k-token trace, hundreds of lines
/// down, lands with it on screen. The bundled sample fits, and has no map.
#[test]
fn the_trace_map_and_the_jumps_reach_every_part_of_a_long_trace() {
    let h = harness();
    assert!(h.query_by_label("trace map").is_none(), "the sample fits on the screen");

    let spec = flowtracer::synth::SynthSpec { seed: 7, target_tokens: 8000, layers: 1, heads: 1, dtype: flowtracer::trace::Dtype::F16, rank: 2, no_answer: false };
    let trace = flowtracer::Trace::from_bytes(flowtracer::synth::synth_trace(&spec).to_bytes(), std::path::Path::new("long.safetensors")).unwrap();
    let n = trace.n();
    let mut app = FlowApp::new(vec![flowtracer::app::document::Document::new(trace)], flowtracer::Params::default(), flowtracer::app::recent::Recent::in_memory());
    app.model.rescoring.synchronous = true;
    app.model.rescore_now();
    // (the scroll bar fades out over a few frames after a jump)
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).with_max_steps(32).build_ui_state(|ui, app: &mut FlowApp| app.draw(ui), app);
    h.run();
    assert!(h.state().ui.text.lines() > 200, "{} lines", h.state().ui.text.lines());
    assert!(h.state().ui.text.rect_of(n - 1).is_none(), "the end starts off screen");
    let map = h.get_by_label("trace map").rect();
    let pos = egui::pos2(map.center().x, map.bottom() - 1.0);
    h.hover_at(pos);
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton { pos, button: egui::PointerButton::Primary, pressed, modifiers: Default::default() });
    }
    h.run();
    assert!(h.state().ui.text.rect_of(n - 1).is_some(), "a click at the map's foot shows the end");

    let checkpoints = h.state().model.docs[0].analysis.as_ref().unwrap().result.checkpoints.clone();
    assert!(checkpoints.len() >= 3 && checkpoints[0] < n / 2, "{checkpoints:?}");
    for &c in &checkpoints {
        h.get_by_role_and_label(Role::Button, "checkpoint").click();
        h.run();
        assert_eq!(h.state().ui.marks.selected, Some(c));
        assert!(h.state().ui.text.rect_of(c).is_some(), "checkpoint {c} is on screen after the jump");
    }
}
