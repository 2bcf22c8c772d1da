//! `cargo bench --bench solve`: the solve stage's parts on the real bookworm index.
//!
//! Locks a bookworm environment first when the cache has no indexes yet (that needs the mirror),
//! then reads the indexes `env lock` cached and reports the median of several runs for: decompressing and parsing the `Packages`
//! files, saving and loading the parsed index, and resolving `python3 python3-pytest` (base
//! layer and packages layer). bench/solve.sh puts these beside `env lock` and apt.
//!
//! `cargo test --all-targets` runs this file too, without `--bench`: it then says it skips,
//! since timing belongs to `cargo bench` and a test run must not reach the mirror for it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use envkit::solve::index::Index;
use envkit::solve::locker::{self, Inputs, Update};

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut durations = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        last = Some(f());
        durations.push(start.elapsed());
    }
    (median(durations), last.expect("at least one run"))
}

/// The cached `Packages` files of bookworm's suites, largest (the main suite) first.
fn cached_packages(cache: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cache.join("indexes-v1/packages"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort_by_key(|f| std::cmp::Reverse(f.metadata().map(|m| m.len()).unwrap_or(0)));
    files
}

fn decompress(path: &Path) -> String {
    use std::io::Read;
    let file = std::fs::File::open(path).expect("cached index");
    let mut magic = [0u8; 2];
    let _ = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    let mut reader: Box<dyn Read> = if magic == [0xfd, b'7'] {
        Box::new(liblzma::read::XzDecoder::new(std::io::BufReader::new(file)))
    } else if magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut text = String::new();
    reader.read_to_string(&mut text).expect("decompress");
    text
}

/// Fills the cache with bookworm's verified indexes, as `env lock` does on a new machine.
fn prepare_indexes(cache: &Path) {
    eprintln!(
        "no cached indexes in {}: locking bookworm first",
        cache.display()
    );
    let spec = envkit::spec::parse_str(
        "env.kdl",
        "base \"debian:bookworm\"\npackages \"python3\"\n",
    )
    .expect("the bench's env file is valid");
    if let Err(error) = envkit::solve::stage::solve(
        &spec,
        None,
        &Update::Nothing,
        envkit::solve::repository::Freshness::Refresh,
    ) {
        eprintln!("cannot lock bookworm for the bench: {error}");
        std::process::exit(2);
    }
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        eprintln!("solve bench: skipped under `cargo test`; `cargo bench --bench solve` runs it");
        return;
    }
    let cache = envkit::paths::cache_dir();
    if cached_packages(&cache).is_empty() {
        prepare_indexes(&cache);
    }
    let files = cached_packages(&cache);
    let Some(main_index) = files.first() else {
        eprintln!("no cached indexes in {} after locking", cache.display());
        std::process::exit(2);
    };
    let (decompress_time, text) = time(3, || decompress(main_index));
    let (parse_time, _) = time(3, || {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", &text);
        index
    });
    let mut full = Index::new("amd64");
    for (i, file) in files.iter().enumerate() {
        full.add_packages(
            if i == 0 {
                "bookworm"
            } else {
                "bookworm-updates"
            },
            &decompress(file),
        );
    }
    let (save_time, bytes) = time(5, || full.to_bytes());
    let (load_time, _) = time(5, || Index::from_bytes(&bytes).expect("round trip"));
    let inputs = Inputs {
        release: "bookworm".into(),
        architecture: "amd64".into(),
        packages: vec!["python3".into(), "python3-pytest".into()],
        recommends: false,
        installed: None,
    };
    // What a warm `env lock` does: load the cached index, then solve on it (the first solve
    // decodes the packages it reads).
    let (load_and_solve_time, lock) = time(10, || {
        let mut loaded = Index::from_bytes(&bytes).expect("round trip");
        locker::lock(&mut loaded, Vec::new(), &inputs, None, &Update::Nothing).expect("solvable")
    });
    let solve_time = load_and_solve_time.saturating_sub(load_time);
    let ms = |d: Duration| format!("{:8.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "bookworm main index: {} packages, {:.1} MB of text, {:.1} MB parsed cache",
        full.len(),
        text.len() as f64 / 1e6,
        bytes.len() as f64 / 1e6
    );
    println!("decompress Packages.xz          {}", ms(decompress_time));
    println!("parse Packages (main suite)     {}", ms(parse_time));
    println!("save parsed index               {}", ms(save_time));
    println!("load parsed index (cached)      {}", ms(load_time));
    println!(
        "solve python3 python3-pytest    {}  ({} packages)",
        ms(solve_time),
        lock.packages.len()
    );
    println!(
        "load + solve (warm env lock)    {}",
        ms(load_and_solve_time)
    );
}
