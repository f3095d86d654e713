//! `cclake`: parses the command line, starts tracing, calls the library.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cclake::catalog::Catalog;
use cclake::ingest::pseudonym::PseudonymKey;
use cclake::generate::genesys::{generate_genesys, GenesysOptions};
use cclake::generate::{generate, FlatStyle, GenerateOptions};
use cclake::query::read_model::{load_views, ReadModel};
use cclake::access::{AccessConfig, Role};
use cclake::server::{self, ScheduledIngest, ServeOptions};
use cclake::lake::lease::LeaseOptions;
use cclake::storage::Location;
use cclake::demo::{demo_password, read_model, DEMO_PASSWORD_FILE, DEMO_USER};
use cclake::{Lake, LakeOptions};

#[path = "cli/args.rs"]
mod args;
#[path = "cli/exit.rs"]
mod exit;

use args::*;
use exit::*;

fn main() -> ExitCode {
    tune_allocator();
    // `cclake query` plans on these threads: their stacks hold the deepest expression the
    // SQL guard lets through, as the server's query threads do.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(cclake::query::executor::QUERY_THREAD_STACK_BYTES)
        .enable_all()
        .build();
    match runtime {
        // On a thread with the query threads' stack, not on the main thread's 8 MB.
        Ok(runtime) => {
            let main = std::thread::Builder::new()
                .name("cclake-main".into())
                .stack_size(cclake::query::executor::QUERY_THREAD_STACK_BYTES)
                .spawn(move || runtime.block_on(cli_main()));
            match main.map(std::thread::JoinHandle::join) {
                Ok(Ok(code)) => code,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(e) => {
                    eprintln!("error: cannot start the main thread: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives each thread an arena that it grows, and hands back to the system,
/// 128 KB at a time: an ingest that builds and frees hundreds of MB of Arrow buffers spends
/// much of its time in the kernel, growing arenas and faulting their pages in again. A 64 MB
/// pad grows and trims them in larger steps. Setting the pad stops glibc from raising its
/// mmap threshold as it does by default (from 128 KB up to 32 MB, as large blocks are
/// freed), so the threshold is set too, or every query buffer over 128 KB is a fresh mmap.
/// Each arena keeps its pad when it trims, so the arenas are capped at two per core (glibc's
/// default allows eight, and a long ingest's blocking threads spread over more of them as it
/// goes, each holding its pad). A `MALLOC_ARENA_MAX` in the environment is left to rule. Set
/// before any thread starts. Figures: benches/README.md, "Why the code is so".
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(2);
        let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets malloc's parameters, under malloc's own lock.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}

async fn cli_main() -> ExitCode {
    // CCLAKE_LOG sets cclake's own level. Dependencies stay at `warn`: delta-rs logs file
    // statistics (column minima and maxima, recording URLs among them) at debug level.
    let chosen = std::env::var("CCLAKE_LOG").ok();
    // Scheduled ingest passes say what they committed unless a level was chosen.
    let schedule = if chosen.is_none() { format!(",{}=info", server::SCHEDULE_LOG) } else { String::new() };
    let level = chosen.unwrap_or_else(|| "warn".to_string());
    // delta-rs's MERGE warns, on every merge that prunes files, that a metric of its own
    // is derived: nothing a user can act on.
    let filter = EnvFilter::try_new(format!("warn,deltalake_core::operations::merge=error,cclake={level}{schedule}"))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into files or pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // rustls is built with two crypto providers in this tree: choose one for TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`cclake query ... | head`): nothing more to say to anyone.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) if e.is::<LakeDamaged>() => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_LAKE_DAMAGED)
        }
        Err(e) if is_lease_refusal(e.as_ref()) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_LAKE_BUSY)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(e.as_ref()))
        }
    }
}

/// Standard output, buffered; every write returns its error (a closed pipe ends the program
/// quietly instead of panicking as `println!` does).
fn stdout() -> std::io::BufWriter<std::io::Stdout> {
    std::io::BufWriter::new(std::io::stdout())
}

/// The compliance commands: erase, vacuum, retain.
async fn upkeep_command(command: Command, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Erase { lake, conversation_ids, interaction_ids, from_file, by, pseudonym_key, writer } => {
            let mut ids = conversation_ids;
            ids.extend(interaction_ids);
            if let Some(file) = from_file {
                let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                ids.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
            }
            if ids.is_empty() {
                return Err("no ids to erase: give --conversation-id, --interaction-id or --from-file".into());
            }
            let by = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".to_string());
            let pseudonym_key = pseudonym_key.as_deref().map(PseudonymKey::new).transpose()?.map(Arc::new);
            let lake = Lake::open_with(&lake.lake, LakeOptions { lease: writer.lease(), pseudonym_key, ..Default::default() }).await?;
            let report = lake.erase(&ids, &by).await?;
            writeln!(out, "{report}")?;
        }
        Command::Vacuum { lake, retain, dry_run, writer } => {
            let lake = Lake::open_with(&lake.lake, LakeOptions { lease: writer.lease(), ..Default::default() }).await?;
            let report = lake.vacuum(retain, dry_run).await?;
            writeln!(out, "{report}")?;
        }
        Command::Retain { lake, older_than, before, writer } => {
            let before = match (before, older_than) {
                (Some(day), _) => day,
                (None, Some(age)) => (chrono::Utc::now() - chrono::Duration::from_std(age)?).date_naive(),
                (None, None) => return Err("give --older-than or --before".into()),
            };
            let lake = Lake::open_with(&lake.lake, LakeOptions { lease: writer.lease(), ..Default::default() }).await?;
            let report = lake.retain(before).await?;
            writeln!(out, "{report}")?;
        }
        _ => unreachable!("only the upkeep commands are passed"),
    }
    Ok(())
}

/// Memory a query run by the CLI may use before sorts and aggregations spill to disk.
const CLI_QUERY_MEMORY_BYTES: usize = 2048 * 1024 * 1024;

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let progress = std::io::stderr().is_terminal();
    let mut out = stdout();
    match cli.command {
        Command::Generate { out: folder, shape, interactions, days, seed, faults } => {
            if matches!(shape, Shape::Flat | Shape::Seed | Shape::All) {
                let style = if shape == Shape::Seed { FlatStyle::Seed } else { FlatStyle::Compact };
                let options = GenerateOptions { interactions, days, seed, faults, style, ..Default::default() };
                let manifest = generate(&folder, &options)?;
                writeln!(out, "{}", manifest.summary(&folder))?;
            }
            if !matches!(shape, Shape::Flat | Shape::Seed) {
                let options = GenesysOptions {
                    conversations: interactions,
                    details: shape != Shape::Eventbridge,
                    eventbridge: shape != Shape::Details,
                    days,
                    seed,
                    ..Default::default()
                };
                std::fs::create_dir_all(&folder)?;
                let manifest = generate_genesys(&folder, &options)?;
                writeln!(out, "{}", manifest.summary(&folder))?;
            }
        }
        Command::Ingest { lake, source, batch_rows, compact_min_files, no_auto_compact, expansion, writer } => {
            let options = LakeOptions {
                compact_min_files,
                auto_compact: !no_auto_compact,
                ..expansion.lake_options(writer.lease(), batch_rows, progress)?
            };
            ingest_command(&lake.lake, &source, options, &mut out).await?
        }
        Command::Query { lake, sql, format, views, as_of } => {
            let catalog = Catalog::open(&lake.lake).await?;
            let model = ReadModel::new(catalog, load_views(views.as_deref())?, CLI_QUERY_MEMORY_BYTES).await?;
            // Whoever can read the lake's files reads every table: the CLI runs as auditor.
            let ctx = match as_of {
                Some(as_of) => model.session_as_of(Role::Auditor, &as_of).await?.0,
                None => model.session(Role::Auditor).await?,
            };
            let (schema, stream) = cclake::query::stream_sql(&ctx, &sql).await?;
            cclake::query::write_results(schema, stream, format, &mut out).await?;
        }
        Command::Compact { lake, writer } => {
            let lake = Lake::open_with(&lake.lake, LakeOptions { lease: writer.lease(), ..Default::default() }).await?;
            let report = lake.compact().await?;
            writeln!(out, "{report}")?;
        }
        command @ (Command::Erase { .. } | Command::Vacuum { .. } | Command::Retain { .. }) => upkeep_command(command, &mut out).await?,
        Command::Check { lake, repair, writer } => {
            let lake = Lake::open_with(&lake.lake, LakeOptions { lease: writer.lease(), ..Default::default() }).await?;
            let report = lake.check(repair).await?;
            writeln!(out, "{report}")?;
            out.flush()?;
            if !report.is_sound() {
                return Err(LakeDamaged.into());
            }
        }
        Command::User { command } => user_command(command, &mut out)?,
        Command::Serve { lake, serve } => {
            let mut options = ServeOptions {
                tls: serve.tls_cert.clone().zip(serve.tls_key.clone()),
                allow_plaintext: serve.allow_plaintext,
                ingest: None,
            };
            // The address first: a taken port or a refused plaintext address is said at once.
            let listener = server::bind(serve.addr, &options).await?;
            // The read side opens the tables read-only; the writer only with --ingest-from.
            let catalog = Catalog::open(&lake.lake).await?;
            if let Some(source) = serve.ingest_from.clone() {
                let lease = LeaseOptions { ttl: serve.lease_ttl, wait: serve.wait.unwrap_or(serve.interval) };
                let lake_options = serve.expansion.lake_options(lease, serve.batch_rows, false)?;
                let writer = Arc::new(Lake::open_with(&lake.lake, lake_options).await?);
                writer.check_source(&Location::parse(&source, false)?).await?;
                options.ingest = Some(ScheduledIngest {
                    lake: writer,
                    source,
                    interval: serve.interval,
                    retain_for: serve.retain_for,
                    vacuum_retain: serve.vacuum_retain,
                });
            }
            let access = AccessConfig::load(&existing_config(&serve.config)?)?;
            if access.users.is_empty() {
                return Err(format!("{} has no users: add one with `cclake user add`", serve.config.display()).into());
            }
            let model = read_model(catalog, &access, serve.views.as_deref()).await?;
            run_server(model, access, listener, options, &mut out).await?;
        }
        Command::Demo { dir, interactions, addr, no_serve } => {
            demo(dir, interactions, addr, no_serve, progress, &mut out).await?
        }
    }
    out.flush()?;
    Ok(())
}

/// `cclake ingest`: one pass; SIGINT or SIGTERM stops it at a commit boundary (exit 0).
async fn ingest_command(lake: &str, source: &str, options: LakeOptions, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    // Checked before the lake is opened, since opening creates it: swapped flags or a
    // mistyped source must not leave a lake behind.
    let source_location = Location::parse(source, false)?;
    let lake_location = Location::parse(lake, false)?;
    cclake::pipeline::check_source_location(&source_location, &lake_location, true).await?;
    let lake = Lake::open_or_create_with(lake, options).await?;
    // SIGINT or SIGTERM: the commit in flight finishes, no further object is taken,
    // and the pass ends with what it committed (exit 0).
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = shutdown_signal()?;
    let stopping = stop.clone();
    tokio::spawn(async move {
        signal.await;
        stopping.cancel();
    });
    let report = lake.ingest_until(source, &stop).await?;
    writeln!(out, "{report}")?;
    if let Some(mb) = peak_memory_mb() {
        writeln!(out, "peak memory: {mb} MB")?;
    }
    Ok(())
}

/// `cclake user ...`: the users of a server's config file.
fn user_command(command: UserCommand, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        UserCommand::Add { config, name, role, password_stdin, replace } => {
            let password = read_new_password(&name, password_stdin)?;
            let mut access = AccessConfig::load(&config)?;
            access.add_user(&name, role, &password, replace)?;
            access.save(&config)?;
            writeln!(out, "user {name} ({}) saved in {}", role.as_str(), config.display())?;
        }
        UserCommand::List { config } => {
            let access = AccessConfig::load(&existing_config(&config)?)?;
            writeln!(out, "{:<24} role", "name")?;
            for user in &access.users {
                writeln!(out, "{:<24} {}", user.name, user.role.as_str())?;
            }
        }
        UserCommand::Remove { config, name } => {
            let mut access = AccessConfig::load(&existing_config(&config)?)?;
            access.remove_user(&config, &name)?;
            access.save(&config)?;
            writeln!(out, "user {name} removed from {} (a running server keeps it until restarted)", config.display())?;
        }
        UserCommand::Passwd { config, name, password_stdin } => {
            let mut access = AccessConfig::load(&existing_config(&config)?)?;
            let Some(role) = access.users.iter().find(|u| u.name == name).map(|u| u.role) else {
                return Err(cclake::access::AccessError::NoSuchUser { path: config.display().to_string(), name }.into());
            };
            let password = read_new_password(&name, password_stdin)?;
            access.add_user(&name, role, &password, true)?;
            access.save(&config)?;
            writeln!(out, "password of {name} ({}) changed in {}", role.as_str(), config.display())?;
        }
    }
    Ok(())
}

/// `path` when the config file exists; else an error saying so and how to make it.
fn existing_config(path: &Path) -> Result<PathBuf, String> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    Err(format!(
        "config file {} does not exist: create it with `cclake user add --config {} --name NAME --role analyst`",
        path.display(),
        path.display()
    ))
}

/// The new user's password: from standard input with `--password-stdin` (without echo when
/// that is a terminal), else asked for twice on the terminal.
fn read_new_password(name: &str, from_stdin: bool) -> Result<String, Box<dyn std::error::Error>> {
    let stdin_is_terminal = std::io::stdin().is_terminal();
    if from_stdin && !stdin_is_terminal {
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        return Ok(password.trim_end_matches(['\n', '\r']).to_string());
    }
    if !stdin_is_terminal {
        return Err("no terminal to ask for the password on: pipe it in with --password-stdin".into());
    }
    let password = rpassword::prompt_password(format!("Password for {name}: "))?;
    if !from_stdin {
        let again = rpassword::prompt_password("Repeat the password: ")?;
        if again != password {
            return Err("the two passwords differ; nothing was saved".into());
        }
    }
    if password.is_empty() {
        return Err("the password is empty; nothing was saved".into());
    }
    Ok(password)
}

/// Serves until SIGINT or SIGTERM; prints the bound address first (tests read it).
async fn run_server(
    model: Arc<ReadModel>,
    access: AccessConfig,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal()?;
    let bound = listener.local_addr()?;
    let scheme = if options.tls.is_some() { "grpc+tls" } else { "grpc" };
    writeln!(out, "listening on {scheme}://{bound}")?;
    out.flush()?;
    server::serve(model, access, listener, options, shutdown).await?;
    Ok(())
}

/// Registers the SIGINT and SIGTERM handlers now (for a server, before the address is
/// printed: a signal sent as soon as it is seen listening must stop it cleanly, not kill it),
/// and returns the future that resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("stopping: the commit in flight finishes, no further export object is taken");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping: the commit in flight finishes, no further export object is taken");
        })
    }
}

/// How to run this very binary again, as the person sees it (relative to the current folder
/// when it lies below it): the demo's printed commands work as printed.
fn this_program() -> String {
    let Ok(exe) = std::env::current_exe() else { return "cclake".to_string() };
    let relative = std::env::current_dir().ok().and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf));
    match relative {
        Some(path) => format!("./{}", path.display()),
        None => exe.display().to_string(),
    }
}

/// Quotes `text` for a POSIX shell when it needs it.
fn shell_quote(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The embedded default end to end: exports → lake on local disk → Flight SQL.
async fn demo(
    dir: PathBuf,
    interactions: usize,
    addr: SocketAddr,
    no_serve: bool,
    progress: bool,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let serve_options = ServeOptions { tls: None, allow_plaintext: false, ingest: None };
    // Take the port before any work, so that a busy port costs nothing and says what to do.
    let listener = if no_serve {
        None
    } else {
        Some(server::bind(addr, &serve_options).await.map_err(|e| {
            format!("{e}\n(another program, or another demo, is using it: pass another address, e.g. --addr 127.0.0.1:50052)")
        })?)
    };
    let demo = cclake::demo::prepare(&dir, interactions, progress, out).await?;
    let Some(listener) = listener else {
        return Ok(());
    };

    let password = demo_password(&dir, &demo.config)?;
    let access = AccessConfig::load(&demo.config)?;
    let bound = listener.local_addr()?;
    let url = format!("grpc://{bound}");
    let query_sql = "SELECT * FROM queue_daily_metrics ORDER BY date LIMIT 5";
    writeln!(
        out,
        "\nServing the demo lake over Flight SQL (read-only) on {url} as analyst `{DEMO_USER}`, password `{password}`\n\
         (kept in {} for the next run).\n\n\
         Python (pip install adbc-driver-flightsql pyarrow), the three lines as they are:\n\n\
         import adbc_driver_flightsql.dbapi as flightsql\n\
         conn = flightsql.connect(\"{url}\", db_kwargs={{\"username\": \"{DEMO_USER}\", \"password\": \"{password}\"}}, autocommit=True)\n\
         cur = conn.cursor(); cur.execute(\"{query_sql}\"); print(cur.fetch_arrow_table())\n\n\
         JDBC / DBeaver (Arrow Flight SQL driver), the URL:\n\n\
         jdbc:arrow-flight-sql://{bound}?useEncryption=false&user={DEMO_USER}&password={password}\n\n\
         In-process, without the server (another terminal, same folder):\n\n\
         {} query --lake {} \"{query_sql}\"\n\n\
         Ctrl-C stops the server.",
        dir.join(DEMO_PASSWORD_FILE).display(),
        this_program(),
        shell_quote(&demo.lake_path),
    )?;
    run_server(demo.model, access, listener, serve_options, out).await
}
