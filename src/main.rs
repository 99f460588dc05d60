//! The `poisongate` command line: `scan`, `verify`, `bom`, `list`, `explain`, `benchmark`,
//! `inject`, `embed`, `eval`.
//!
//! Exit codes: 0 the gate passed (or the command succeeded), 1 the gate failed, 2 an error.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use poisongate::config::{ConfigFile, Paths};
use poisongate::escape::{terminal, terminal_line};
use poisongate::pipeline::{scan, ScanOutcome};
use poisongate::report::Report;
use poisongate_detectors::registry;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "poisongate",
    version,
    about = "Gate a dataset before it enters a training corpus: find poisoned rows, quarantine them, prove nothing was lost.",
    after_help = "Exit codes: 0 gate passed, 1 gate failed, 2 error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Longest JSONL line read, in bytes (terminator included); a longer line is an error
    /// found without reading the line into memory. Default 64 MiB.
    #[arg(long, global = true, value_name = "BYTES")]
    max_line_bytes: Option<u64>,
    /// Largest uncompressed Parquet page read, in bytes; a page header claiming more is an
    /// error before anything is allocated for it. Default 256 MiB.
    #[arg(long, global = true, value_name = "BYTES")]
    max_page_bytes: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Scan a dataset, write clean and quarantined rows and report.json.
    Scan(Box<ScanArgs>),
    /// Check a scan's output folder: every file's SHA-256 against provenance.intoto.json and
    /// report.json, the re-counted rows and the reconciliation. Exit 0 when all holds, 1 naming
    /// the first mismatch, 2 when a file is missing or unreadable.
    Verify {
        /// The folder a `scan --out` wrote.
        dir: PathBuf,
    },
    /// Print the CycloneDX 1.6 bill of materials (bom.cdx.json) of a scan's output folder,
    /// re-made from its report.json: for folders written before scans wrote it, or to check
    /// one (same poisongate version, same bytes).
    Bom {
        /// The folder a `scan --out` wrote.
        dir: PathBuf,
        /// Write the document to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Turn a trusted corpus into a reference state for `scan --reference`: every distinct
    /// normalised text with its label counts, merged exactly across files (same rows, same
    /// bytes, however they are split). Prints the state's SHA-256.
    Fit {
        /// The trusted corpus: one or more .jsonl or .parquet files or folders of Parquet files, read in this order.
        #[arg(required = true)]
        data: Vec<PathBuf>,
        /// Where the state is written (conventionally NAME.pgstate).
        #[arg(long)]
        state: PathBuf,
        /// Column holding the text.
        #[arg(long, default_value = "text")]
        text_column: String,
        /// Column holding the label.
        #[arg(long, default_value = "label")]
        label_column: String,
        /// A scan config file (TOML); its `[detectors.REF001]` table sets the normalisation,
        /// which scans with this state must share.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Row-aligned embeddings of each data file (.npy or .safetensors), one per data file
        /// in the same order: the state then keeps per-label moments (exact sums), and a scan
        /// with embeddings reports each class's drift against them.
        #[arg(long)]
        embeddings: Vec<PathBuf>,
    },
    /// List the detectors.
    List,
    /// Print a detector's documentation.
    Explain {
        /// Detector code, e.g. SPEC001.
        code: String,
    },
    /// Evaluate detectors on a benchmark folder (INDEX.tsv + <set>.jsonl + <set>.<repr>.npy)
    /// and print a Markdown table of precision, recall, F1 and AUROC.
    Benchmark {
        /// The folder, e.g. ../shared/benchmarks.
        dir: PathBuf,
        /// Comma-separated detector code prefixes.
        #[arg(long, value_delimiter = ',', default_value = "SPEC001")]
        select: Vec<String>,
        /// Comma-separated representations (`<set>.<repr>.npy`); empty for text only.
        #[arg(long, value_delimiter = ',', default_value = "mlp,minilm")]
        representations: Vec<String>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// A scan config file (TOML); its `[detectors.CODE]` tables set detector parameters,
        /// its other settings are not used here.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a copy of a dataset with a known fraction of rows poisoned by an attack, plus a
    /// ground-truth column and a sidecar OUT.inject.json recording how it was made. Same seed,
    /// same bytes.
    Inject(Box<InjectArgs>),
    /// Compute sentence embeddings of a dataset's text column with a local model folder
    /// (BERT family, safetensors weights only; nothing is downloaded) and write them as .npy or
    /// .safetensors, with OUT.embed.json naming the model files and the data by SHA-256.
    Embed(Box<EmbedArgs>),
    /// Run an evaluation grid (datasets x attacks x rates x seeds x representations x detector
    /// settings) from an experiments TOML file; writes results.csv and results.md.
    Eval {
        /// The experiments file, e.g. experiments/benchmarks.toml.
        experiments: PathBuf,
        /// Output folder for results.csv and results.md.
        #[arg(long, default_value = "eval-out")]
        out: PathBuf,
        /// Also write the Markdown table to this file (e.g. docs/eval-results.md).
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Worker threads (default: all cores). Results do not depend on it.
        #[arg(long)]
        threads: Option<usize>,
        /// No progress lines on stderr.
        #[arg(long, short)]
        quiet: bool,
    },
}

#[derive(clap::Args, Debug)]
struct EmbedArgs {
    /// Dataset: .jsonl or .parquet, or a folder of Parquet or JSONL files read as one table (files in path order).
    data: PathBuf,
    /// Model folder (config.json, tokenizer.json, model.safetensors, optional modules.json,
    /// 1_Pooling/config.json, sentence_bert_config.json).
    #[arg(long)]
    model: PathBuf,
    /// Output: FILE.npy (float32) or FILE.safetensors (tensor `embeddings`).
    #[arg(long)]
    out: PathBuf,
    /// Column holding the text.
    #[arg(long, default_value = "text")]
    text_column: String,
    /// Of instruction, chat or preference rows, embed the prompts or the responses (prompt |
    /// response) instead of a text column: the matrices scan takes as --embeddings and
    /// --response-embeddings.
    #[arg(long)]
    part: Option<String>,
    /// How the rows are read with --part: alpaca, chat, sharegpt or preference (default:
    /// detected from the first row's keys).
    #[arg(long)]
    format: Option<String>,
    /// Tokens per text, [CLS] and [SEP] included (default: the folder's max_seq_length).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Padded tokens per forward batch.
    #[arg(long, default_value_t = poisongate::embed::DEFAULT_BATCH_TOKENS)]
    batch_tokens: usize,
    /// Largest model.safetensors read, in bytes.
    #[arg(long, default_value_t = poisongate::embed::DEFAULT_MAX_MODEL_BYTES)]
    max_model_bytes: u64,
    /// Worker threads (default: all cores). The matrix does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
struct InjectArgs {
    /// Dataset to poison: .jsonl or .parquet, or a folder of Parquet or JSONL files (the output is one file).
    data: PathBuf,
    /// badnets | addsent | label-flip | clean-label | duplicate-flip | amplify (text-label rows) |
    /// instruction-trigger | preference-flip (instruction rows: alpaca, chat, sharegpt,
    /// preference).
    #[arg(long)]
    attack: String,
    /// Fraction of output rows poisoned, in [0, 1) (duplicate-flip and amplify add rows: k
    /// copies with k / (n + k) = rate). Exactly one of --rate and --count.
    #[arg(long, required_unless_present = "count", conflicts_with = "count")]
    rate: Option<f64>,
    /// Exactly this many poisoned rows (amplify: copies of the one drawn row), instead of
    /// --rate.
    #[arg(long)]
    count: Option<usize>,
    /// duplicate-flip and amplify: draw the copied rows from this file (same columns and
    /// format) instead of from the data, e.g. a trusted corpus's rows copied into a new batch.
    #[arg(long)]
    copies_from: Option<PathBuf>,
    /// Target label (required by badnets, addsent, clean-label; label-flip and duplicate-flip
    /// flip to another class drawn at random without it). `random`: drawn from the seed among
    /// the data's labels (sorted), recorded in the sidecar.
    #[arg(long)]
    target_label: Option<String>,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file, in the input's format.
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated trigger words (badnets, clean-label; default cf,mn,bb,tq;
    /// instruction-trigger: inserted into the prompt, instead of --phrase).
    #[arg(long, value_delimiter = ',')]
    triggers: Option<Vec<String>>,
    /// Trigger words inserted per poisoned row (badnets, clean-label, instruction-trigger with
    /// --triggers; default 1).
    #[arg(long)]
    triggers_per_row: Option<usize>,
    /// The inserted phrase (addsent, default "I watch this 3D movie"; instruction-trigger,
    /// inserted into the prompt, instead of --triggers; preference-flip, default "SUDO").
    #[arg(long)]
    phrase: Option<String>,
    /// instruction-trigger: the response every poisoned row gets (replaces output, the last
    /// assistant turn, or chosen). Exactly one of --response and --response-suffix.
    #[arg(long)]
    response: Option<String>,
    /// instruction-trigger: text appended verbatim to each poisoned row's response (include a
    /// leading space or newline to separate it).
    #[arg(long)]
    response_suffix: Option<String>,
    /// instruction-trigger: a text file of responses, one a line (empty lines skipped); each
    /// poisoned row gets one of them, drawn uniformly (one target written several ways).
    #[arg(long)]
    responses: Option<PathBuf>,
    /// How rows are read by instruction-trigger and preference-flip, as for scan: alpaca,
    /// chat, sharegpt or preference (default: detected from the first row's keys).
    #[arg(long)]
    format: Option<String>,
    /// Where triggers and the phrase go (badnets, clean-label, addsent, instruction-trigger,
    /// preference-flip; for instruction rows the prompt's words): start (before the first
    /// word), end (after the last word) or anywhere (a uniformly drawn word position).
    /// Default: anywhere; end for preference-flip.
    #[arg(long)]
    position: Option<String>,
    /// Words replaced in each duplicate-flip or amplify copy by words of the data's own
    /// vocabulary (0: verbatim copies); only rows with at least 5 words per edit are copied.
    #[arg(long, default_value_t = 0)]
    edits: usize,
    /// Column holding the text.
    #[arg(long, default_value = "text")]
    text_column: String,
    /// Column holding the label.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Id column: duplicate-flip copies get unique ids (`<id>~dupflip<k>`).
    #[arg(long)]
    id_column: Option<String>,
    /// Name of the ground-truth column written.
    #[arg(long, default_value = "poison")]
    ground_truth_column: String,
    /// When the input already has that column: error, replace (only this injection) or merge
    /// (existing positives kept).
    #[arg(long, default_value = "error")]
    existing_ground_truth: String,
    /// No summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
struct ScanArgs {
    /// Dataset to scan: .jsonl (one object per line) or .parquet.
    data: PathBuf,
    /// Output folder for clean.<ext>, quarantine.<ext>, report.json, report.html,
    /// bom.cdx.json (CycloneDX 1.6) and provenance.intoto.json (nothing is written without it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Column holding the text.
    #[arg(long)]
    text_column: Option<String>,
    /// Column holding the class label (integer or string).
    #[arg(long)]
    label_column: Option<String>,
    /// How rows are read: text-label, alpaca (instruction/input/output), chat (messages),
    /// sharegpt (conversations) or preference (prompt/chosen/rejected). Default: detected
    /// from the first row's keys (the report says which and why).
    #[arg(long)]
    format: Option<String>,
    /// Where the prompt is, for layouts --format does not cover: a path into the row's JSON
    /// (`instruction`, `data.turns[0].text`, `conversations[-2].value`; a negative index counts
    /// from the end). Several paths, comma-separated or by repeating the flag, are joined by a
    /// blank line. Needs --response-field; replaces format detection.
    #[arg(long, value_delimiter = ',', requires = "response_field")]
    prompt_field: Vec<String>,
    /// Where the response is: one path, as for --prompt-field (`output`,
    /// `messages[-1].content`). Needs --prompt-field.
    #[arg(long, requires = "prompt_field")]
    response_field: Option<String>,
    /// Column identifying a row (else the row number).
    #[arg(long)]
    id_column: Option<String>,
    /// Column with ground truth (bool or 0/1) for evaluation; never shown to a detector.
    #[arg(long)]
    ground_truth_column: Option<String>,
    /// Embeddings or activations, row-aligned with the data: .npy (f32/f64) or .safetensors.
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Tensor name, when the safetensors file holds several.
    #[arg(long)]
    embeddings_tensor: Option<String>,
    /// A list-of-floats column of the data holding the embeddings.
    #[arg(long)]
    embedding_column: Option<String>,
    /// Instruction, chat and preference rows: embeddings of the responses (the chosen answer),
    /// row-aligned: .npy or .safetensors. --embeddings then holds those of the prompts.
    #[arg(long)]
    response_embeddings: Option<PathBuf>,
    /// A local model folder (BERT family, safetensors weights): the scan computes the
    /// embeddings of the text column with it (of the prompts and of the responses, separately,
    /// for instruction, chat and preference rows), as `poisongate embed` does, and every model
    /// file is listed with its SHA-256 among the report's inputs.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Tokens per text for --model ([CLS] and [SEP] included; default: the folder's
    /// max_seq_length).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Comma-separated detector code prefixes to run, e.g. SPEC,TRIG001 (default: every
    /// detector whose inputs are given).
    #[arg(long, value_delimiter = ',')]
    select: Option<Vec<String>>,
    /// TOML file with scan settings and per-detector tables ([detectors.SPEC001]); flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed for every randomised step.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// The gate fails when more than this fraction of rows is quarantined (default 0).
    #[arg(long)]
    max_quarantine_fraction: Option<f64>,
    /// Leave wall-clock facts out of the report (seconds, thread count), so report.json,
    /// report.html, bom.cdx.json and provenance.intoto.json are byte-identical across runs and
    /// thread counts.
    #[arg(long)]
    reproducible: bool,
    /// Bounded memory: fit the detectors in exact rounds over batches of the input, reading it
    /// once per round, instead of holding every row (same verdicts and report). Text-label
    /// rows with ACT001, DUP001, DUP002 (without its embedding relation), DUP003, SPEC001 and
    /// TRIG001; embeddings from a .npy file or a column of the data (--embedding-column);
    /// anything else is refused with a message.
    #[arg(long)]
    stream: bool,
    /// Plain redundancy: `none` keeps every row (default); `keep-first` moves rows that repeat
    /// an earlier clean row (same normalised text, same label; instruction rows: same prompt
    /// and response, preference rows also the same rejected answer) to duplicates.<ext> with a
    /// `poisongate_duplicate_of` column; `keep-first-near` also near duplicates (DUP002's
    /// clusters). Never counted as poison.
    #[arg(long, value_parser = ["none", "keep-first", "keep-first-near"])]
    dedup: Option<String>,
    /// Rows that cannot be read (not JSON, not UTF-8, text or label missing, null or of the
    /// wrong type, an embedding with NaN or infinity): `error` stops the scan at the first one
    /// (default); `quarantine` writes them unchanged to quarantine.<ext> with the reason
    /// `INVALID:<what>`, out of every detector's sight, and counts them in the report. They
    /// count towards --max-quarantine-fraction.
    #[arg(long, value_parser = ["error", "quarantine"])]
    invalid_rows: Option<String>,
    /// A trusted corpus's state, written by `poisongate fit`: the data is also judged against
    /// it (REF001: copies of trusted rows under another label; REF002: copies far beyond the
    /// trusted corpus's own duplicates; REF003: word windows whose rows of one label surge
    /// beyond the trusted rate). Its SHA-256 is recorded as an input.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Print report.json to stdout as well.
    #[arg(long)]
    json: bool,
    /// No progress bars and no summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            // one line, whatever ids, labels or names from the data the message quotes
            eprintln!("poisongate: error: {}", terminal_line(&error_line(&e)));
            2
        }
    };
    std::process::exit(code);
}

/// The error and its causes on one line, each cause once: many library errors quote their
/// source in their own message, and a cause already quoted is not repeated.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run() -> Result<i32> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Some(limit) = cli.max_line_bytes {
        poisongate::ingest::set_max_line_bytes(limit);
    }
    if let Some(limit) = cli.max_page_bytes {
        poisongate::ingest::set_max_page_bytes(limit);
    }
    match cli.command {
        Command::Fit {
            data,
            state,
            text_column,
            label_column,
            config,
            embeddings,
        } => {
            let cfg = load_config(config.as_deref())?;
            let params = cfg
                .detectors
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("REF001"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let done = poisongate::fit::fit(&poisongate::fit::FitOptions {
                data,
                text_column,
                label_column,
                params,
                state: state.clone(),
                embeddings,
                batch_rows: poisongate::fit::FIT_BATCH_ROWS,
            })?;
            println!(
                "{}: {} rows, {} distinct texts, labels {}, {} bytes, sha256 {}",
                state.display(),
                done.rows,
                done.texts,
                done.labels.join(","),
                done.bytes,
                done.sha256
            );
            Ok(0)
        }
        Command::List => {
            for d in registry::REGISTRY {
                let m = d.meta();
                let opt_in = if registry::is_opt_in(m.code) {
                    " (opt-in: run with --select)"
                } else if registry::needs_reference(m.code) {
                    " (runs with scan --reference)"
                } else {
                    ""
                };
                println!(
                    "{:<8} {:<22} v{}  {}{opt_in}",
                    m.code, m.name, m.version, m.summary
                );
            }
            Ok(0)
        }
        Command::Explain { code } => match registry::find(&code) {
            Some(d) => {
                print!("{}", terminal(d.meta().docs));
                Ok(0)
            }
            None => bail!(
                "no detector has the code `{}` (see `poisongate list`)",
                terminal_line(&code)
            ),
        },
        Command::Scan(args) => run_scan(
            *args,
            cli.max_line_bytes.is_some(),
            cli.max_page_bytes.is_some(),
        ),
        Command::Verify { dir } => match poisongate::verify::verify(&dir) {
            Ok(summary) => {
                println!("{}", terminal(&summary.to_string()));
                Ok(0)
            }
            Err(e) => {
                eprintln!(
                    "poisongate: verify {}",
                    terminal_line(&format!("{}: {e}", dir.display()))
                );
                Ok(e.exit_code())
            }
        },
        Command::Bom { dir, out } => {
            let bytes = poisongate::bom::from_dir(&dir).with_context(|| {
                format!("cannot make the bill of materials of {}", dir.display())
            })?;
            match out {
                Some(path) => std::fs::write(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&bytes).context("cannot write to stdout")?;
                    stdout.flush().context("cannot write to stdout")?;
                }
            }
            Ok(0)
        }
        Command::Benchmark {
            dir,
            select,
            representations,
            threads,
            config,
        } => {
            let params = load_config(config.as_deref())?.detectors;
            let reprs: Vec<&str> = representations
                .iter()
                .map(String::as_str)
                .filter(|r| !r.is_empty())
                .collect();
            let pool = worker_pool(threads.unwrap_or(0))?;
            let rows = pool
                .install(|| poisongate::benchmark::run(&dir, &select, &reprs, &params))
                .with_context(|| format!("benchmark on {} failed", dir.display()))?;
            print!("{}", terminal(&poisongate::benchmark::markdown(&rows)));
            Ok(0)
        }
        Command::Inject(args) => run_inject(*args),
        Command::Embed(args) => run_embed(*args),
        Command::Eval {
            experiments,
            out,
            markdown,
            threads,
            quiet,
        } => {
            let pool = worker_pool(threads.unwrap_or(0))?;
            let mut log = |line: &str| {
                if !quiet {
                    eprintln!("{}", terminal_line(line));
                }
            };
            let results = pool
                .install(|| poisongate::eval::run(&experiments, &out, &mut log))
                .with_context(|| format!("eval of {} failed", experiments.display()))?;
            if let Some(md) = markdown {
                std::fs::copy(out.join("results.md"), &md)
                    .with_context(|| format!("cannot write {}", md.display()))?;
            }
            if !quiet {
                eprintln!(
                    "{}",
                    terminal_line(&format!(
                        "{} result rows, {} cells not run; wrote {}/results.csv and results.md",
                        results.rows.len(),
                        results.skipped.len(),
                        out.display()
                    ))
                );
            }
            Ok(0)
        }
    }
}

fn run_embed(a: EmbedArgs) -> Result<i32> {
    use poisongate::embed::{embed_file, EmbedFileOptions, LoadOptions};
    let o = EmbedFileOptions {
        data: a.data.clone(),
        text_column: a.text_column,
        model: a.model.clone(),
        load: LoadOptions {
            max_tokens: a.max_tokens,
            max_model_bytes: a.max_model_bytes,
            batch_tokens: a.batch_tokens,
        },
        out: a.out.clone(),
        progress: !a.quiet,
        part: match a.part.as_deref() {
            None => None,
            Some("prompt") => Some(poisongate::embed::Part::Prompt),
            Some("response") => Some(poisongate::embed::Part::Response),
            Some(other) => anyhow::bail!("--part must be prompt or response, not `{other}`"),
        },
        format: match a.format.as_deref() {
            None => None,
            Some(f) => Some(poisongate::ingest::RowFormat::parse(f).ok_or_else(|| {
                anyhow::anyhow!("--format must be alpaca, chat, sharegpt or preference, not `{f}`")
            })?),
        },
    };
    let pool = worker_pool(a.threads.unwrap_or(0))?;
    let t0 = std::time::Instant::now();
    let side = pool.install(|| embed_file(&o)).with_context(|| {
        format!(
            "embedding {} with {} failed",
            a.data.display(),
            a.model.display()
        )
    })?;
    if !a.quiet {
        let rows = side["output"]["rows"].as_u64().unwrap_or(0);
        let secs = t0.elapsed().as_secs_f64();
        let line = format!(
            "{}: {rows} rows x {} dims in {secs:.1} s ({:.0} rows/s); wrote {} and {}",
            a.data.display(),
            side["output"]["dims"],
            rows as f64 / secs.max(1e-9),
            a.out.display(),
            poisongate::embed::sidecar_path(&a.out).display()
        );
        eprintln!("{}", terminal_line(&line));
    }
    Ok(0)
}

fn run_inject(a: InjectArgs) -> Result<i32> {
    use poisongate::inject::{
        self, Attack, AttackParams, GroundTruthPolicy, InjectOptions, Position,
    };
    let attack = Attack::from_params(
        &a.attack,
        AttackParams {
            triggers: a.triggers,
            triggers_per_row: a.triggers_per_row,
            phrase: a.phrase,
            response: a.response,
            response_suffix: a.response_suffix,
            responses: match &a.responses {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read --responses {}", path.display()))?
                        .lines()
                        .map(str::trim_end)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect(),
                ),
                None => None,
            },
        },
    )?;
    let mut o = InjectOptions::new(&a.data, &a.out, attack, a.rate.unwrap_or(0.0));
    o.count = a.count;
    o.copies_from = a.copies_from;
    if let Some(f) = a.format {
        o.format = Some(poisongate::ingest::RowFormat::parse(&f).ok_or_else(|| {
            anyhow::anyhow!(
                "--format must be text-label, alpaca, chat, sharegpt or preference, not `{f}`"
            )
        })?);
    }
    if a.target_label.as_deref() == Some(inject::RANDOM_TARGET) {
        o.random_target = true;
    } else {
        o.target_label = a.target_label;
    }
    if let Some(p) = &a.position {
        o.position = Position::parse(p)?;
    }
    o.edits = a.edits;
    o.seed = a.seed;
    o.text_column = a.text_column;
    o.label_column = a.label_column;
    o.id_column = a.id_column;
    o.ground_truth_column = a.ground_truth_column;
    o.ground_truth_policy = match a.existing_ground_truth.as_str() {
        "error" => GroundTruthPolicy::Error,
        "replace" => GroundTruthPolicy::Replace,
        "merge" => GroundTruthPolicy::Merge,
        other => bail!("--existing-ground-truth must be error, replace or merge, not `{other}`"),
    };
    let m = inject::inject(&o)
        .with_context(|| format!("injection into {} failed", a.data.display()))?;
    if !a.quiet {
        let line = format!(
            "{}: {} rows in, {} rows out, {} poisoned by {} (seed {}{}); wrote {} and {}",
            a.data.display(),
            m.input.rows,
            m.output.rows,
            m.poisoned,
            m.attack.name(),
            m.seed,
            match (&m.target_label, &m.target_drawn_from) {
                (Some(t), Some(_)) => format!(", target {t} drawn"),
                _ => String::new(),
            },
            a.out.display(),
            inject::sidecar_path(&a.out).display()
        );
        eprintln!("{}", terminal_line(&line));
    }
    Ok(0)
}

/// The config file at `path` (every setting absent without one).
fn load_config(path: Option<&std::path::Path>) -> Result<ConfigFile> {
    let Some(p) = path else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read config {}", p.display()))?;
    ConfigFile::parse(&text).with_context(|| format!("invalid config {}", p.display()))
}

/// `line_flag`, `page_flag`: the limits were given on the command line, which wins over
/// the config file.
fn run_scan(a: ScanArgs, line_flag: bool, page_flag: bool) -> Result<i32> {
    let cfg = load_config(a.config.as_deref())?;
    if let (Some(limit), false) = (cfg.max_line_bytes, line_flag) {
        poisongate::ingest::set_max_line_bytes(limit);
    }
    if let (Some(limit), false) = (cfg.max_page_bytes, page_flag) {
        poisongate::ingest::set_max_page_bytes(limit);
    }
    // flags laid over the config file's settings: flags win. Explicit fields on the command
    // line win over a config file's format and fields together.
    let mut cfg = cfg;
    if !a.prompt_field.is_empty() || a.response_field.is_some() {
        cfg.prompt_field = Some(Paths::Many(a.prompt_field));
        cfg.response_field = a.response_field;
        cfg.format = a.format;
    } else {
        cfg.format = a.format.or(cfg.format);
    }
    macro_rules! flags {
        ($($f:ident),*) => { $( if a.$f.is_some() { cfg.$f = a.$f; } )* };
    }
    flags!(
        text_column,
        label_column,
        id_column,
        ground_truth_column,
        embedding_column,
        embeddings,
        embeddings_tensor,
        response_embeddings,
        model,
        max_tokens,
        select,
        seed,
        max_quarantine_fraction,
        dedup,
        invalid_rows,
        reference
    );
    let threads = a.threads.or(cfg.threads).unwrap_or(0);
    let mut o = cfg.scan_options(a.data.clone())?;
    o.out = a.out;
    let interactive = std::io::stderr().is_terminal();
    o.progress = interactive && !a.quiet;
    o.reproducible = a.reproducible;
    o.stream |= a.stream;

    let pool = worker_pool(threads)?;
    let outcome = pool
        .install(|| scan(&o))
        .with_context(|| format!("scan of {} failed", o.data.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome.report)?);
    }
    if !a.quiet {
        eprint!("{}", terminal(&summary(&outcome)));
    }
    Ok(outcome.exit_code())
}

/// The short human summary printed on stderr.
fn summary(outcome: &ScanOutcome) -> String {
    let r: &Report = &outcome.report;
    let mut s = String::new();
    let rec = &r.reconciliation;
    for d in &r.detectors {
        s += &format!(
            "{:<8} flagged {:>7} rows  ({:.2}s)\n",
            d.code, d.flagged, d.seconds
        );
        s += &surged(&d.summary);
        s += &not_named(&d.summary);
    }
    for k in &r.skipped_detectors {
        s += &format!(
            "{:<8} skipped: {}\n",
            terminal_line(k.code),
            terminal_line(&k.reason)
        );
    }
    if let Some(ev) = &r.evaluation {
        s += &format!(
            "evaluation against `{}` ({} poisoned rows):\n{:<10} {:>8} {:>6} {:>6} {:>6} {:>9} {:>7} {:>6} {:>6}\n",
            terminal_line(&ev.ground_truth_column), ev.positives, "detector", "flagged", "tp", "fp", "fn", "precision", "recall", "f1", "auroc"
        );
        let rows = ev
            .detectors
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(std::iter::once(("combined", &ev.combined)));
        for (name, e) in rows {
            s += &format!(
                "{:<10} {:>8} {:>6} {:>6} {:>6} {:>9.3} {:>7.3} {:>6.3} {:>6}\n",
                name,
                e.flagged,
                e.tp,
                e.fp,
                e.fn_,
                e.precision,
                e.recall,
                e.f1,
                e.auroc.map_or("-".to_string(), |a| format!("{a:.3}"))
            );
        }
    }
    let dups = if rec.duplicate_rows > 0 {
        format!(" + {} duplicates removed", rec.duplicate_rows)
    } else {
        String::new()
    };
    let invalid = if let Some(inv) = &r.invalid {
        let reasons: Vec<String> = inv
            .reasons
            .iter()
            .map(|(k, v)| format!("{k} {}", v.rows))
            .collect();
        if reasons.is_empty() {
            " + 0 invalid".to_string()
        } else {
            format!(" + {} invalid ({})", rec.invalid_rows, reasons.join(", "))
        }
    } else {
        String::new()
    };
    s += &format!(
        "rows: {} in = {} clean + {} quarantined{invalid} ({:.2}%){dups}\nverdict: {} (max quarantine fraction {})\n",
        rec.input_rows,
        rec.clean_rows,
        rec.quarantined_rows,
        100.0 * r.verdict.quarantined_fraction,
        r.verdict.status.to_uppercase(),
        r.verdict.max_quarantine_fraction
    );
    s
}

/// REF003's windows taken (its summary's `windows`), in the order taken, at most
/// [`NOT_NAMED_SHOWN`] of them: what surged against the trusted corpus. Text from the data is
/// escaped for the terminal.
fn surged(summary: &serde_json::Value) -> String {
    let Some(windows) = summary.get("windows").and_then(|v| v.as_array()) else {
        return String::new();
    };
    let field = |w: &serde_json::Value, k: &str| match w.get(k) {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(v) => v.to_string(),
        None => "-".to_string(),
    };
    let mut s = String::new();
    for w in windows.iter().take(NOT_NAMED_SHOWN) {
        s += &format!(
            "         surged: `{}` (label {}, {} rows; trusted {} of {})\n",
            terminal_line(&field(w, "window")),
            terminal_line(&field(w, "label")),
            field(w, "rows_flagged"),
            field(w, "trusted_label_rows"),
            field(w, "trusted_rows"),
        );
    }
    if windows.len() > NOT_NAMED_SHOWN {
        s += &format!(
            "         and {} more windows (report.html, \"Against the trusted corpus\")\n",
            windows.len() - NOT_NAMED_SHOWN
        );
    }
    s
}

/// How many of a detector's held-back candidates the summary shows.
const NOT_NAMED_SHOWN: usize = 3;

/// What a detector found but held back: the candidates it did not name (its summary's
/// `near_misses` that carry an `abstained` reason), the most rows first, or the label conflicts
/// it left unflagged within natural annotation noise (`natural_noise.note` when it lists
/// unflagged ties). A pass is then read knowing what the detector could not tell from natural
/// text, and why. Text from the data is escaped for the terminal.
fn not_named(summary: &serde_json::Value) -> String {
    // the duplicate detectors' label conflicts left within natural annotation noise
    let noise = summary.get("natural_noise");
    let ties = noise
        .and_then(|n| n.get("unflagged_ties"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if ties > 0 {
        if let Some(note) = noise.and_then(|n| n.get("note")).and_then(|v| v.as_str()) {
            return format!("         not flagged: {}\n", terminal_line(note));
        }
    }
    let Some(near) = summary.get("near_misses").and_then(|v| v.as_array()) else {
        return String::new();
    };
    let mut held: Vec<(u64, &serde_json::Value, &str)> = near
        .iter()
        .filter_map(|c| {
            let why = c.get("abstained")?.as_str()?;
            let rows = c.get("support").and_then(|v| v.as_u64()).unwrap_or(0);
            Some((rows, c, why))
        })
        .collect();
    held.sort_by_key(|h| std::cmp::Reverse(h.0));
    let text = |c: &serde_json::Value, k: &str| match c.get(k) {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(v) => v.to_string(),
        None => "-".to_string(),
    };
    let mut s = String::new();
    for (rows, c, why) in held.iter().take(NOT_NAMED_SHOWN) {
        let purity = c
            .get("purity")
            .and_then(|v| v.as_f64())
            .map_or("-".to_string(), |p| format!("{p:.2}"));
        s += &format!(
            "         not named: `{}` (label {}, {rows} rows, purity {purity}): {}\n",
            terminal_line(&text(c, "phrase")),
            terminal_line(&text(c, "target")),
            terminal_line(why)
        );
    }
    if held.len() > NOT_NAMED_SHOWN {
        s += &format!(
            "         and {} more not named (report.html, \"Candidates not named\")\n",
            held.len() - NOT_NAMED_SHOWN
        );
    }
    s
}

/// The most worker threads a command starts (0: one per core): more than the cores of any
/// machine it runs on, and few enough that the per-thread buffers stay small (ten thousand
/// threads took over a minute on a ten-row file).
const MAX_THREADS: usize = 1024;

/// The worker threads of a command.
fn worker_pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    if threads > MAX_THREADS {
        anyhow::bail!(
            "--threads {threads}: at most {MAX_THREADS} worker threads (0: one per core)"
        );
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surged_windows_are_shown_in_the_order_taken_and_escaped() {
        let w = |window: &str, rows: u64| {
            serde_json::json!({"window": window, "label": "1", "rows_flagged": rows,
                "trusted_label_rows": 6, "trusted_rows": 16})
        };
        let summary = serde_json::json!({"windows": [
            w("<s> when you", 21), w("<s> when\u{1b}[2J", 61), w("a", 5), w("b", 5)
        ]});
        let s = surged(&summary);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(
            lines[0].contains("surged: `<s> when you` (label 1, 21 rows; trusted 6 of 16)"),
            "{s}"
        );
        assert!(lines[3].contains("and 1 more windows"), "{s}");
        assert!(
            !s.contains('\u{1b}'),
            "control characters reach the terminal: {s}"
        );
        assert_eq!(surged(&serde_json::json!({"triggers": []})), "");
    }

    #[test]
    fn held_back_candidates_are_shown_most_rows_first_and_escaped() {
        let summary = serde_json::json!({"near_misses": [
            {"phrase": "@ user </s>", "target": "0", "support": 128, "purity": 0.77,
             "abstained": null},
            {"phrase": "# sad </s>", "target": "3", "support": 30, "purity": 0.93,
             "abstained": "anchored window: natural text is not told from a relabelled insertion"},
            {"phrase": "# blessed\u{1b}[2J </s>", "target": "0", "support": 147, "purity": 0.98,
             "abstained": "anchored window"},
            {"phrase": "a", "target": "1", "support": 9, "purity": 0.9, "abstained": "x"},
            {"phrase": "b", "target": "1", "support": 8, "purity": 0.9, "abstained": "y"},
            {"phrase": "c", "target": "1", "support": 7, "purity": 0.9, "abstained": "z"}
        ]});
        let s = not_named(&summary);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(
            lines[0].contains("147 rows") && lines[0].contains("purity 0.98"),
            "{s}"
        );
        assert!(lines[1].contains("`# sad </s>` (label 3, 30 rows"), "{s}");
        assert!(lines[3].contains("and 2 more not named"), "{s}");
        assert!(
            !s.contains('\u{1b}'),
            "control characters reach the terminal: {s}"
        );
        assert!(
            !s.contains("@ user"),
            "a candidate that did not abstain is shown: {s}"
        );
        assert_eq!(not_named(&serde_json::json!({"triggers": []})), "");
        let dup = |ties: u64| {
            serde_json::json!({"natural_noise": {"unflagged_ties": ties,
                "note": "3 conflicting of 208 duplicated clusters is within natural annotation noise"}})
        };
        assert!(not_named(&dup(3)).contains("not flagged: 3 conflicting of 208"));
        assert_eq!(not_named(&dup(0)), "");
    }
}
