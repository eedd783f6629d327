//! The `flowtracer` binary: a thin layer of argument parsing over the library.

use clap::{Parser, Subcommand};
use flowtracer::backend::{self, Choice};
use flowtracer::export::{self, Format, Formats};
use flowtracer::flow::Cancel;
use flowtracer::params::Params;
use flowtracer::trace::Dtype;
use flowtracer::{Trace, bench, summary, synth};
use flowtracer::rl::grpo::CreditMode;
use flowtracer::rl::task::Task;
use flowtracer::rl::train::TrainConfig;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli_rl;
mod cli_values;

#[global_allocator]
static ALLOC: flowtracer::alloc::Counting = flowtracer::alloc::Counting;

#[derive(Parser)]
#[command(name = "flowtracer", version, about = "Trace which tokens carried the information from the question to the answer.", args_conflicts_with_subcommands = true)]
struct Cli {
    /// Write results here instead of opening a window (headless, for CI).
    #[arg(long, value_name = "OUT_DIR")]
    export: Option<PathBuf>,
    /// Parameter file (TOML, or JSON by extension); defaults otherwise.
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// What runs the pipeline; `flowtracer backends` says what this machine has.
    #[arg(long, value_enum, default_value_t = Choice::Auto)]
    backend: Choice,
    /// The files to write, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    format: Vec<Format>,
    /// Print the backbone, hubs and credit on the terminal instead of opening the window.
    #[arg(long)]
    print: bool,
    /// A run folder without traces is not an error (by default it is: a wrong path in a CI job
    /// would otherwise pass).
    #[arg(long)]
    allow_empty: bool,
    /// Trace files or run folders.
    #[arg(value_name = "TRACE|RUN")]
    inputs: Vec<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Time every pipeline step and the whole export on synthetic traces.
    Bench {
        /// Token counts to measure (each at least 1; the synthetic text makes a trace of at least ~70).
        #[arg(long, value_delimiter = ',', default_value = "1024,4096,8192", value_parser = cli_values::count)]
        sizes: Vec<usize>,
        /// The backend to time.
        #[arg(long, value_enum, default_value_t = Choice::Auto)]
        backend: Choice,
        /// Runs per case; the median is reported.
        #[arg(long, default_value_t = 3, value_parser = cli_values::count)]
        repeat: usize,
        /// Skip the [L,H,N,N] f16 aggregation cases (never run from 16384 tokens, where the
        /// [N,N] case is F16).
        #[arg(long)]
        no_heads: bool,
        /// Also time every element type in every layout below 16384 tokens (F32, F16 and BF16;
        /// [N,N], [L,N,N] and [L,H,N,N]): the aggregation's rate and its share of the floor for each.
        #[arg(long)]
        layouts: bool,
        /// A folder to work in: the bench makes one of its own inside it for its synthetic traces
        /// and exports, and removes that when it ends (the system's temporary folder by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also time this peer script on the same files (`tests/peer/flowtracer_numpy.py`), below
        /// 16384 tokens (at 16k NumPy's float64 pipeline takes minutes and 9 GB a run). It runs
        /// under `python3`, which must import NumPy and SciPy (checked before the first case).
        #[arg(long)]
        peer: Option<PathBuf>,
        /// Time the app instead: a re-score and a frame of the text view, per size.
        #[arg(long)]
        ui: bool,
        /// Also run this many different traces as one batch at the first size: traces per second.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// With --ui, also open a run folder of this many small traces in the app: the time to
        /// its first frame, a frame, and until every status is filled in.
        #[arg(long, default_value_t = 0)]
        run: usize,
    },
    /// Fine-tune the project's small policy with GRPO, token advantages shaped by a credit mode;
    /// with --compare, one run per mode and seed and a table of held-out accuracy.
    Train {
        /// The task the policy learns.
        #[arg(long, value_enum, default_value_t = Task::Addition)]
        task: Task,
        /// How token advantages are shaped (flow: by the pipeline's credit).
        #[arg(long, value_enum, default_value_t = CreditMode::Flow)]
        credit: CreditMode,
        /// GRPO steps.
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// Seeds the policy's sampling and the problems.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The run folder (resumed if it holds a checkpoint); with --compare, the folder of runs.
        #[arg(long)]
        out: PathBuf,
        /// Start from a supervised warm start of this many steps instead of the task's shipped
        /// checkpoint (or, for a task without one, supervised training to 30% held-out).
        #[arg(long)]
        sft_steps: Option<usize>,
        /// Start from these policy weights (a checkpoint of an earlier run).
        #[arg(long)]
        init: Option<PathBuf>,
        /// Flow parameters (TOML or JSON): the layers and heads flow credit aggregates, and γ's
        /// selection for every mode.
        #[arg(long, value_name = "FILE")]
        params: Option<PathBuf>,
        /// γ for the selected tokens (overrides the parameters' credit.gamma; default 1.5).
        #[arg(long)]
        gamma: Option<f64>,
        /// Share of response tokens that get γ (overrides credit.fraction; default 0.4).
        #[arg(long)]
        fraction: Option<f64>,
        /// Held-out problems scored every --eval-every steps.
        #[arg(long, default_value_t = 256, value_parser = cli_values::count)]
        eval_size: usize,
        /// Steps between held-out evaluations.
        #[arg(long, default_value_t = 10, value_parser = cli_values::count)]
        eval_every: usize,
        /// Compare these credit modes (comma-separated), each over --seeds seeds.
        #[arg(long, value_enum, value_delimiter = ',')]
        compare: Vec<CreditMode>,
        /// With --compare: seeds per mode (0, 1, …).
        #[arg(long, default_value_t = 1, value_parser = cli_values::count)]
        seeds: usize,
        /// The accuracy whose "steps to" the comparison reports.
        #[arg(long, default_value_t = 0.5, value_parser = cli_values::share)]
        target: f64,
        /// A tiny policy, for trying the loop in seconds.
        #[arg(long)]
        tiny: bool,
    },
    /// Supervised training of a fresh policy until its held-out accuracy reaches --target: the
    /// warm start RL begins from (the shipped checkpoints were made with this).
    Warmstart {
        /// The task the policy learns.
        #[arg(long, value_enum, default_value_t = Task::Addition)]
        task: Task,
        /// Held-out accuracy to stop at.
        #[arg(long, default_value_t = 0.3, value_parser = cli_values::share)]
        target: f64,
        /// Stop here even below the target.
        #[arg(long, default_value_t = 3000, value_parser = cli_values::count)]
        max_steps: usize,
        /// Seeds the initial weights and the problems.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Held-out problems scored at each evaluation.
        #[arg(long, default_value_t = 256, value_parser = cli_values::count)]
        eval_size: usize,
        /// Where the weights go (safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Replace OUT where it exists (without it, an existing file is refused before training).
        #[arg(long)]
        overwrite: bool,
    },
    /// The causal check: hide the highest-flow, lowest-flow or random 20% of each response's
    /// reasoning tokens from the policy's attention, regenerate the answer, count what changes;
    /// with --per-token, hide each reasoning token alone and measure its effect on the answer.
    Probe {
        /// The task whose problems are probed.
        #[arg(long, value_enum, default_value_t = Task::Addition)]
        task: Task,
        /// Policy weights (default: the task's shipped checkpoint).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Held-out problems to probe.
        #[arg(long, default_value_t = 256, value_parser = cli_values::count)]
        problems: usize,
        /// Share of each response's reasoning tokens hidden at once.
        #[arg(long, default_value_t = 0.2, value_parser = cli_values::share)]
        fraction: f64,
        /// Seeds the problems and the random choice.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// What computes the flow of each response.
        #[arg(long, value_enum, default_value_t = Choice::Auto)]
        backend: Choice,
        /// Flow parameters (TOML or JSON).
        #[arg(long)]
        params: Option<PathBuf>,
        /// Hide each reasoning token alone instead of a share: its effect on the answer, per token.
        #[arg(long)]
        per_token: bool,
        /// With --per-token: print how well every credit score (and throughput under each layer
        /// choice) predicts the measured effects.
        #[arg(long, requires = "per_token")]
        table: bool,
        /// With --per-token: write each probed response here as a trace with its `causal_effect`.
        #[arg(long, requires = "per_token", value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// How well each credit score ranks the tokens by their measured effect on the answer, over
    /// trace files that carry `causal_effect` (`probe --per-token --out` writes them, and
    /// Python's `flowtracer.causal_effect` + `dump` on any Hugging Face model): per trace the
    /// Spearman correlation of each score with the nats the answer loses, summarised over traces.
    Fidelity {
        /// Trace files or run folders (traces without `causal_effect` are counted and left out).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Flow parameters (TOML or JSON).
        #[arg(long)]
        params: Option<PathBuf>,
        /// Seeds the random baseline and the bootstrap intervals.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Which backends this machine has, on which device, and which one `--backend auto` takes.
    Backends,
    /// Write synthetic traces (`sample_traces/synthetic/` was made with this).
    Synth {
        /// The trace file to write.
        #[arg(long)]
        out: PathBuf,
        /// About this many tokens.
        #[arg(long, default_value_t = 160, value_parser = cli_values::count)]
        tokens: usize,
        /// Layers of attention stored.
        #[arg(long, default_value_t = 6, value_parser = cli_values::count)]
        layers: usize,
        /// Heads per layer stored.
        #[arg(long, default_value_t = 4, value_parser = cli_values::count)]
        heads: usize,
        /// Seeds the text and the attention.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The attention's element type.
        #[arg(long, value_enum, default_value_t = Dtype::F16)]
        dtype: Dtype,
        /// 4 = [L,H,N,N], 3 = [L,N,N], 2 = [N,N].
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=4))]
        rank: u8,
        /// Leave the answer span empty (the pipeline's `no_answer` case).
        #[arg(long)]
        no_answer: bool,
        /// Replace OUT where it exists (without it, an existing file is refused: it may be a trace of yours).
        #[arg(long)]
        overwrite: bool,
    },
}

fn main() -> ExitCode {
    // Mesa's Vulkan device-select layer connects to Wayland to pick a GPU and prints an error
    // where there is no session (servers, CI). Without a session it has nothing to pick with.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() && std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: first thing in main, before any thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    flowtracer::alloc::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench { sizes, repeat, ui: true, run, dir, .. }) => {
            println!("the app on {} · {} threads · median of {repeat}\n", flowtracer::cpu::describe(), rayon::current_num_threads());
            println!("| N | re-score ms: credit change | backbone change | role change | re-score ms: aggregation change ([4,8,N,N] F16; from 16k [N,N] F16) | knock-out loss of every token ms (in each re-score) | text view frame ms (CPU: layout + tessellation) | step graph ms | matrix overview ms (CPU) | matrix detail ms (2048² window) |\n|---|---|---|---|---|---|---|---|---|---|");
            for n in sizes {
                let b = match bench::ui_bench(n, repeat) {
                    Ok(b) => b,
                    Err(e) => return usage(format!("bench --ui: {e}")),
                };
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                println!("| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} |", b.n, ms(b.rescore), ms(b.rebackbone), ms(b.reroles), ms(b.reaggregate), ms(b.knockout), ms(b.frame), ms(b.steps), ms(b.overview), ms(b.detail));
            }
            if run > 0 {
                let scratch = match bench::Scratch::new(&dir.unwrap_or_else(std::env::temp_dir)) {
                    Ok(s) => s,
                    Err(e) => return usage(e),
                };
                match bench::run_open_bench(run, scratch.path()) {
                    Ok(b) => println!(
                        "\n| run of traces | open: listed, first trace opened, Run view drawn ms | Run view frame ms | every status filled s |\n|---|---|---|---|\n| {} | {:.1} | {:.2} | {:.1} |",
                        b.count,
                        b.open.as_secs_f64() * 1e3,
                        b.frame.as_secs_f64() * 1e3,
                        b.filled.as_secs_f64()
                    ),
                    Err(e) => return usage(e),
                }
            }
            ExitCode::SUCCESS
        }
        Some(Command::Bench { sizes, backend, repeat, no_heads, layouts, dir, peer, ui: false, batch, .. }) => run_bench(sizes, backend, repeat, &|n| bench::cases(n, no_heads, layouts), dir, peer, batch),
        Some(Command::Train { task, credit, steps, seed, out, sft_steps, init, params, gamma, fraction, eval_size, eval_every, compare, seeds, target, tiny }) => {
            let mut cfg = TrainConfig::new(task, credit, steps, seed);
            cfg.sft_steps = sft_steps;
            cfg.init = init;
            cfg.params = match load_params(&params) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            cfg.params.credit.gamma = gamma.unwrap_or(cfg.params.credit.gamma);
            cfg.params.credit.fraction = fraction.unwrap_or(cfg.params.credit.fraction);
            if let Err(e) = cfg.params.validate() {
                return usage(e);
            }
            cfg.eval_size = eval_size;
            cfg.eval_every = eval_every;
            if tiny {
                cfg.model = flowtracer::rl::model::Config::tiny();
                cfg.eval_size = 16;
                cfg.sft_steps.get_or_insert(20);
            }
            cli_rl::run_train(cli_rl::TrainArgs { cfg, out, compare, seeds, target })
        }
        Some(Command::Warmstart { task, target, max_steps, seed, eval_size, out, overwrite }) => match cli_values::new_file(&out, overwrite) {
            Ok(()) => cli_rl::run_warmstart(task, target, max_steps, seed, eval_size, &out, overwrite),
            Err(e) => {
                eprintln!("flowtracer: {e}");
                ExitCode::from(1)
            }
        },
        Some(Command::Probe { task, policy, problems, fraction, seed, backend, params, per_token, table, out }) => match load_params(&params) {
            Ok(params) if per_token => cli_rl::run_token_probe(cli_rl::TokenProbeArgs { task, policy, problems, seed, params, table, out }),
            Ok(params) => cli_rl::run_probe(cli_rl::ProbeArgs { task, policy, problems, fraction, seed, backend, params }),
            Err(e) => usage(e),
        },
        Some(Command::Fidelity { inputs, params, seed }) => run_fidelity(&inputs, &params, seed),
        Some(Command::Backends) => {
            println!("{}", backend::availability_report());
            ExitCode::SUCCESS
        }
        Some(Command::Synth { out, tokens, layers, heads, seed, dtype, rank, no_answer, overwrite }) => {
            let spec = synth::SynthSpec { seed, target_tokens: tokens, layers, heads, dtype, rank: rank.into(), no_answer };
            if let Err(e) = spec.check() {
                return usage(format!("synth: {e}"));
            }
            if let Err(e) = cli_values::new_file(&out, overwrite) {
                eprintln!("flowtracer: {e}");
                return ExitCode::from(1);
            }
            match cli_values::write_out(&out, &synth::synth_trace(&spec).to_bytes(), overwrite) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("flowtracer: {e}");
                    ExitCode::from(1)
                }
            }
        }
        None => match cli.export.clone() {
            Some(out) => run_export(out, &cli),
            None if cli.print => run_print(&cli),
            None => run_app(&cli),
        },
    }
}

fn usage(msg: String) -> ExitCode {
    eprintln!("flowtracer: {msg}");
    ExitCode::from(2)
}

fn load_params(path: &Option<PathBuf>) -> Result<Params, String> {
    match path {
        Some(p) => Params::load(p),
        None => Ok(Params::default()),
    }
}

fn run_export(out: PathBuf, cli: &Cli) -> ExitCode {
    if cli.inputs.is_empty() {
        return usage("--export needs at least one trace file or run folder".into());
    }
    let params = match load_params(&cli.params) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let formats = Formats::of(&cli.format);
    let backend = match backend::select(cli.backend) {
        Ok(b) => b,
        Err(e) => return usage(e.to_string()),
    };
    if cli.params.is_some() && cli.inputs.iter().any(|i| export::scored::is_scored_run(i)) {
        return usage("--params does not apply to a scored run (Parquet): its rows hold the results of the parameters they were scored with".into());
    }
    let planned = export::plan(&cli.inputs, Some(&out), cli.allow_empty);
    let count = planned.jobs.len() + planned.failed.len();
    let bar = indicatif::ProgressBar::with_draw_target(Some(count as u64), indicatif::ProgressDrawTarget::stderr());
    if count > 1 {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} traces {elapsed_precise} eta {eta} {msg}")
                .expect("static template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let tick = |o: &export::Outcome| {
        match o {
            export::Outcome::Failed { error, .. } => bar.suspend(|| eprintln!("flowtracer: {error}")),
            export::Outcome::Exported { source, fallbacks, .. } if !fallbacks.is_empty() => {
                bar.suspend(|| eprintln!("flowtracer: warning: {source}: {}", flowtracer::flow::provenance::describe(fallbacks)));
            }
            export::Outcome::Exported { .. } => {}
        }
        bar.inc(1);
    };
    // Ctrl-C: the traces in flight finish, the rest are marked not done, summary.json is
    // written; a second Ctrl-C ends the process at once.
    let stop = cli_rl::interrupt();
    let result = export::export(&out, planned, &params, formats, backend.as_ref(), &stop, &tick);
    bar.finish_and_clear();
    let s = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flowtracer: {e}");
            return ExitCode::from(1);
        }
    };
    for w in s.runs.iter().flat_map(|r| &r.warnings) {
        eprintln!("flowtracer: warning: {w}");
    }
    for e in &s.errors {
        eprintln!("flowtracer: {e}");
    }
    let summary = out.join("summary.json");
    if s.interrupted {
        let not_done = s.traces.iter().filter(|o| matches!(o, export::Outcome::Failed { problem: flowtracer::trace::Problem::Cancelled, .. })).count();
        eprintln!("flowtracer: interrupted: exported {} trace(s), {} not done, {} failed → {}", s.exported, not_done, s.failed - not_done, summary.display());
        return ExitCode::from(130);
    }
    eprintln!("flowtracer: exported {} trace(s), {} failed, backend {} → {}", s.exported, s.failed, s.backend, summary.display());
    if s.failed > 0 || !s.errors.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn run_app(cli: &Cli) -> ExitCode {
    let params = match load_params(&cli.params) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    // The window lives as long as the process, and its backend with it.
    let backend: &'static dyn backend::Backend = match cli.backend {
        Choice::Auto => backend::auto(),
        choice => match backend::select(choice) {
            Ok(b) => Box::leak(b),
            Err(e) => return usage(e.to_string()),
        },
    };
    match flowtracer::app::run(&cli.inputs, params, backend) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowtracer: {e}\n(or print the result on the terminal: flowtracer --print [TRACE|RUN])");
            ExitCode::from(1)
        }
    }
}

/// The terminal view: backbone, hubs, checkpoints, credit counts.
fn run_print(cli: &Cli) -> ExitCode {
    let params = match load_params(&cli.params) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let backend = match backend::select(cli.backend) {
        Ok(b) => b,
        Err(e) => return usage(e.to_string()),
    };
    let mut failed = 0;
    let traces: Vec<Result<Trace, String>> = if cli.inputs.is_empty() {
        vec![Ok(flowtracer::sample_trace())]
    } else {
        let planned = export::plan(&cli.inputs, None, cli.allow_empty);
        for f in planned.failed.iter().filter_map(export::Outcome::error) {
            eprintln!("flowtracer: {f}");
            failed += 1;
        }
        planned.jobs.iter().map(|j| Trace::open(&j.source).map_err(|e| e.to_string())).collect()
    };
    for t in traces {
        let ran = t.and_then(|t| {
            let r = backend.run_batch(&[&t], &params, &Cancel::default()).pop().expect("one result per trace");
            r.map(|r| (t, r)).map_err(|e| e.to_string())
        });
        match ran {
            Ok((t, r)) => println!("{}", summary::describe(&t, &r)),
            Err(e) => {
                eprintln!("flowtracer: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn run_fidelity(inputs: &[PathBuf], params: &Option<PathBuf>, seed: u64) -> ExitCode {
    let params = match load_params(params) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    // (an empty folder holds no trace with effects: the one message below says so)
    let planned = export::plan(inputs, None, true);
    let mut failed = 0;
    for f in planned.failed.iter().filter_map(export::Outcome::error) {
        eprintln!("flowtracer: {f}");
        failed += 1;
    }
    let mut traces = Vec::new();
    for job in &planned.jobs {
        match Trace::open(&job.source) {
            Ok(t) => traces.push(t),
            Err(e) => {
                eprintln!("flowtracer: {e}");
                failed += 1;
            }
        }
    }
    if traces.is_empty() && failed > 0 {
        return ExitCode::from(1);
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(traces.len() as u64), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} traces measured {elapsed_precise} eta {eta}").expect("static template"));
    let measured = flowtracer::fidelity::measure(&traces, &params, seed, &cli_rl::interrupt(), &|| bar.inc(1));
    bar.finish_and_clear();
    match measured {
        Ok(m) => println!("{}", flowtracer::fidelity::table(&m, seed)),
        Err(e) => {
            eprintln!("flowtracer: {e}");
            return ExitCode::from(1);
        }
    }
    if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// `cases`: what to time at each size (`bench::cases` as the flags chose).
fn run_bench(sizes: Vec<usize>, choice: Choice, repeat: usize, cases: &dyn Fn(usize) -> Vec<bench::BenchCase>, dir: Option<PathBuf>, peer: Option<PathBuf>, batch: usize) -> ExitCode {
    let backend = match backend::select(choice) {
        Ok(b) => b,
        Err(e) => return usage(e.to_string()),
    };
    if let Some(Err(e)) = peer.as_deref().map(bench::check_peer) {
        eprintln!("flowtracer: bench: {e}");
        return ExitCode::from(1);
    }
    let scratch = match bench::Scratch::new(&dir.unwrap_or_else(std::env::temp_dir)) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let dir = scratch.path();
    // Ctrl-C: the case in flight finishes, the tables so far are printed, the bench's files go;
    // a second Ctrl-C ends the process at once.
    let stop = cli_rl::interrupt();
    let device = match backend.device() {
        d if d.is_empty() => d,
        d => format!(" on {d}"),
    };
    println!("backend {}{device} · {} threads of {} · median of {repeat}", backend.name(), rayon::current_num_threads(), flowtracer::cpu::describe());
    let mut rows = Vec::new();
    'sizes: for &n in &sizes {
        let cases = cases(n);
        for (i, case) in cases.iter().enumerate() {
            if stop.is_cancelled() {
                break 'sizes;
            }
            // The synthetic text ends at a sentence: the trace is about `n` tokens, and the
            // table gives its exact length.
            eprintln!("bench: about {n} tokens, {} …", case.label());
            match bench::run_case(case, dir, backend.as_ref(), repeat, i == 0, peer.as_deref()) {
                Ok(row) => rows.push(row),
                Err(e) => {
                    eprintln!("flowtracer: bench, about {n} tokens, {}: {e}", case.label());
                    return ExitCode::from(1);
                }
            }
        }
    }
    let batch_line = match (batch, sizes.first()) {
        (b, Some(&n)) if b > 0 && !stop.is_cancelled() => {
            eprintln!("bench: a batch of {b} traces of about {n} tokens …");
            match bench::batch_throughput(n, b, dir, backend.as_ref(), repeat) {
                Ok(r) => Some(format!("\n{}\n{}\n{}\n{}\n", r.line(), r.credit_line(), r.profile_line(), r.export_line())),
                Err(e) => {
                    eprintln!("flowtracer: bench batch: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        _ => None,
    };
    print!("{}", bench::format_table(&rows));
    println!("\nAgainst this machine's floor (a plain sum over the same mapped file, {} threads):\n", rayon::current_num_threads());
    print!("{}", bench::format_floor_table(&rows));
    if let Some(table) = bench::format_device_floor_table(&rows) {
        println!("\nAgainst the device's own floor (its memory: a device-to-device copy, each byte read and written; its link: the same file copied up, from page-locked memory where the API has it):\n");
        print!("{table}");
    }
    let phases = bench::format_export_phases(&rows);
    if !phases.is_empty() {
        println!("\nWhere an export's time goes (each phase's end less the one before: the trace's files are made and written on both cores):\n");
        print!("{phases}");
    }
    let png = bench::format_png_lines(&rows);
    if !png.is_empty() {
        println!("\nThe PNG's deflate beside the alternative (zlib-rs at level 2), the same rows:\n");
        print!("{png}");
    }
    if let Some(line) = batch_line {
        print!("{line}");
    }
    if stop.is_cancelled() {
        eprintln!("flowtracer: bench interrupted: {} case(s) measured", rows.len());
        return ExitCode::from(130);
    }
    ExitCode::SUCCESS
}
