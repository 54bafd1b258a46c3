//! Coroutine runtime figures against their references, measured in the same run
//! (`cargo bench --bench coro`). Each section runs in a fresh child process (so RSS figures are
//! not polluted by earlier sections) and prints the median of several runs next to the raw
//! corosensei (or OS thread) reference and the ratio. No assertions: the note in issue 3 reads
//! these figures against the targets.
//!
//! Sections (pass one as the argument to run it alone): switch, spawn, rss, many, pingpong.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::{Duration, Instant};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use rcontainer::__bench::{Runtime, RuntimeConfig};
use rcontainer::rt;

const RUNS: usize = 7;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median over `RUNS` (after one warm-up) of `f()`, which returns ns per operation.
fn measure(mut f: impl FnMut() -> f64) -> f64 {
    f();
    median((0..RUNS).map(|_| f()).collect())
}

fn report(what: &str, ours: f64, reference: f64, reference_name: &str, unit: &str, target: &str) {
    println!(
        "{what:<50} {ours:>9.1} {unit:<6} | {reference_name:<34} {reference:>9.1} {unit:<6} | ratio {:>5.2}x | target {target}",
        ours / reference
    );
}

fn runtime(max: usize, stack_size: usize) -> Runtime {
    Runtime::new(RuntimeConfig {
        stack_size,
        max_coroutines: max,
        max_tasks: 0,
        offload_threads: 1,
    })
    .expect("runtime")
}

/// Park + wake through the ready queue: two coroutines `yield_now` in turn.
fn switch() {
    const N: u64 = 2_000_000;
    let mut rt = runtime(4, 64 * 1024);
    let ours = measure(|| {
        for _ in 0..2 {
            rt.spawn(|| {
                for _ in 0..N / 2 {
                    rt::yield_now();
                }
            })
            .expect("spawn");
        }
        let start = Instant::now();
        while rt.live() > 0 {
            rt.turn(None).expect("turn");
        }
        start.elapsed().as_nanos() as f64 / N as f64
    });
    let reference = measure(|| {
        let mut co = Coroutine::with_stack(
            DefaultStack::new(64 * 1024).expect("stack"),
            |y: &Yielder<u64, u64>, mut x: u64| -> u64 {
                loop {
                    x = y.suspend(x + 1);
                }
            },
        );
        let start = Instant::now();
        let mut x = 0;
        for _ in 0..N {
            if let CoroutineResult::Yield(v) = co.resume(black_box(x)) {
                x = v;
            }
        }
        black_box(x);
        start.elapsed().as_nanos() as f64 / N as f64
    });
    report(
        "park+wake round trip (yield_now)",
        ours,
        reference,
        "raw corosensei resume+suspend",
        "ns",
        "<= 40 ns",
    );

    // A real park (not a yield): two coroutines hand a value back and forth through channels,
    // each side parks in recv and is woken by the other's send.
    const M: u64 = 500_000;
    let chan = measure(|| {
        let (to_b, from_a) = rt::channel::<u64>();
        let (to_a, from_b) = rt::channel::<u64>();
        rt.spawn(move || {
            for i in 0..M {
                to_b.send(i).ok();
                from_b.recv().expect("recv");
            }
        })
        .expect("spawn");
        rt.spawn(move || {
            for _ in 0..M {
                let v = from_a.recv().expect("recv");
                to_a.send(v).ok();
            }
        })
        .expect("spawn");
        let start = Instant::now();
        while rt.live() > 0 {
            rt.turn(None).expect("turn");
        }
        // One exchange = two parks and two wakes; report per park+wake.
        start.elapsed().as_nanos() as f64 / (2 * M) as f64
    });
    report(
        "park+wake via channel (per park)",
        chan,
        reference,
        "raw corosensei resume+suspend",
        "ns",
        "<= 40 ns",
    );
}

/// Spawn + run-to-completion of an empty coroutine on a pooled stack.
fn spawn() {
    const BATCH: usize = 1000;
    const BATCHES: usize = 200;
    let mut rt = runtime(BATCH, 64 * 1024);
    let ours = measure(|| {
        let start = Instant::now();
        for _ in 0..BATCHES {
            for _ in 0..BATCH {
                drop(rt.spawn(|| black_box(())).expect("spawn"));
            }
            while rt.live() > 0 {
                rt.turn(None).expect("turn");
            }
        }
        start.elapsed().as_nanos() as f64 / (BATCH * BATCHES) as f64
    });
    let reference = measure(|| {
        let mut pool: Vec<DefaultStack> = (0..4)
            .map(|_| DefaultStack::new(64 * 1024).expect("stack"))
            .collect();
        let start = Instant::now();
        for _ in 0..BATCH * BATCHES {
            let stack = pool.pop().expect("pooled stack");
            let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| black_box(()));
            co.resume(());
            pool.push(co.into_stack());
        }
        start.elapsed().as_nanos() as f64 / (BATCH * BATCHES) as f64
    });
    report(
        "spawn + complete, JoinHandle dropped",
        ours,
        reference,
        "raw corosensei pooled create+run",
        "ns",
        "<= 150 ns",
    );
    let detached = measure(|| {
        let start = Instant::now();
        for _ in 0..BATCHES {
            for _ in 0..BATCH {
                rt.spawn_detached(|| black_box(())).expect("spawn");
            }
            while rt.live() > 0 {
                rt.turn(None).expect("turn");
            }
        }
        start.elapsed().as_nanos() as f64 / (BATCH * BATCHES) as f64
    });
    report(
        "spawn_detached + complete (worker's path)",
        detached,
        reference,
        "raw corosensei pooled create+run",
        "ns",
        "<= 150 ns",
    );
}

fn status(field: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = text.lines().find(|l| l.starts_with(field)).expect("field");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("kB")
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .count()
}

/// Touches `bytes` of stack, then parks.
#[inline(never)]
fn touch_then(bytes: usize, park: &dyn Fn()) {
    if bytes == 0 {
        return park();
    }
    let frame = black_box([1u8; 1024]);
    if bytes > 1024 {
        touch_then(bytes - 1024, park);
    } else {
        park();
    }
    black_box(frame);
}

/// RSS of 10,000 parked coroutines that touched 4 KiB of stack each (default 256 KiB stacks).
fn rss() {
    const N: usize = 10_000;
    let which = std::env::args().nth(2).unwrap_or_default();
    let touch: usize = std::env::args()
        .nth(3)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    if which == "raw" {
        let before = status("VmRSS:");
        let maps_before = maps();
        let cos: Vec<_> = (0..N)
            .map(|_| {
                let mut co = Coroutine::with_stack(
                    DefaultStack::new(256 * 1024).expect("stack"),
                    move |y, ()| {
                        touch_then(touch, &|| {
                            y.suspend(());
                        });
                    },
                );
                co.resume(());
                co
            })
            .collect();
        let kib = (status("VmRSS:") - before) / N as f64;
        println!("{kib} {}", (maps() - maps_before) as f64 / N as f64);
        drop(cos);
        return;
    }
    if which == "ours" {
        let mut rt = runtime(N, 256 * 1024);
        let before = status("VmRSS:");
        let maps_before = maps();
        for _ in 0..N {
            rt.spawn(move || touch_then(touch, &|| rt::sleep(Duration::from_secs(3600))))
                .expect("spawn");
        }
        rt.turn(Some(Duration::ZERO)).expect("turn");
        while rt.free_slots() > 0 || rt.live() < N {
            rt.turn(Some(Duration::ZERO)).expect("turn");
            if rt.live() == N {
                break;
            }
        }
        // Run every one of them up to its park.
        for _ in 0..N / 256 + 2 {
            rt.turn(Some(Duration::ZERO)).expect("turn");
        }
        let kib = (status("VmRSS:") - before) / N as f64;
        println!("{kib} {}", (maps() - maps_before) as f64 / N as f64);
        std::process::exit(0); // skip unwinding 10,000 stacks
    }
    let run = |arg: &str, touch: usize| -> (f64, f64) {
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["rss", arg, &touch.to_string()])
            .output()
            .expect("child");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text
            .split_whitespace()
            .map(|v| v.parse::<f64>().expect("number"));
        (it.next().expect("rss"), it.next().expect("maps"))
    };
    for (touch, label) in [
        (0, "plain sleeper"),
        (3072, "3x1 KiB frames, ~4 KiB stack"),
        (4096, "4x1 KiB frames, ~5 KiB stack"),
    ] {
        let (ours, our_maps) = run("ours", touch);
        let (raw, raw_maps) = run("raw", touch);
        report(
            &format!("RSS/coroutine, 10k parked, {label}"),
            ours,
            raw,
            "raw corosensei DefaultStack(256K)",
            "KiB",
            "<= 12 KiB",
        );
        println!(
            "{:<50} {our_maps:>9.4} maps   | {:<34} {raw_maps:>9.4} maps",
            "  kernel mappings per coroutine", ""
        );
    }
}

/// 20,000 concurrent sleepers in one runtime with the default stack size.
fn many() {
    const N: usize = 20_000;
    let maps_before = maps();
    let mut rt = Runtime::new(RuntimeConfig {
        max_coroutines: N,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let before = status("VmRSS:");
    let start = Instant::now();
    for _ in 0..N {
        rt.spawn(|| rt::sleep(Duration::from_millis(500)))
            .expect("spawn");
    }
    for _ in 0..N / 256 + 2 {
        rt.turn(Some(Duration::ZERO)).expect("turn");
    }
    let parked = rt.live();
    let rss = (status("VmRSS:") - before) / N as f64;
    let maps_now = maps();
    while rt.live() > 0 {
        rt.turn(None).expect("turn");
    }
    println!(
        "{:<50} {parked:>9} alive  | {} ; {rss:.1} KiB RSS each; maps {maps_before} -> {maps_now} (max_map_count {}); all woke in {:?}",
        "20,000 concurrent sleepers, 256 KiB stacks",
        rt.stack_summary(),
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .unwrap_or_default()
            .trim(),
        start.elapsed()
    );
}

/// One-byte ping-pong over a socketpair: two coroutines vs two OS threads.
fn pingpong() {
    const N: usize = 100_000;
    let mut rt = runtime(4, 64 * 1024);
    let ours = measure(|| {
        let (a, b) = rt::UnixStream::pair().expect("pair");
        rt.spawn(move || {
            let mut byte = [0u8; 1];
            for _ in 0..N {
                a.write_all(&byte).expect("write");
                (&a).read_exact(&mut byte).expect("read");
            }
        })
        .expect("spawn");
        rt.spawn(move || {
            let mut byte = [0u8; 1];
            for _ in 0..N {
                (&b).read_exact(&mut byte).expect("read");
                b.write_all(&byte).expect("write");
            }
        })
        .expect("spawn");
        let start = Instant::now();
        while rt.live() > 0 {
            rt.turn(None).expect("turn");
        }
        start.elapsed().as_nanos() as f64 / N as f64
    });
    let threads = measure(|| {
        let (mut a, mut b) = StdUnixStream::pair().expect("pair");
        let start = Instant::now();
        let t = std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            for _ in 0..N {
                b.read_exact(&mut byte).expect("read");
                b.write_all(&byte).expect("write");
            }
        });
        let mut byte = [0u8; 1];
        for _ in 0..N {
            a.write_all(&byte).expect("write");
            a.read_exact(&mut byte).expect("read");
        }
        t.join().expect("thread");
        start.elapsed().as_nanos() as f64 / N as f64
    });
    report(
        "socketpair ping-pong round trip",
        ours,
        threads,
        "two OS threads, blocking",
        "ns",
        "<= 1.3x",
    );
}

fn main() {
    let sections: [(&str, fn()); 5] = [
        ("switch", switch),
        ("spawn", spawn),
        ("rss", rss),
        ("many", many),
        ("pingpong", pingpong),
    ];
    match std::env::args().nth(1).filter(|a| !a.starts_with("--")) {
        Some(name) => {
            let (_, f) = sections
                .iter()
                .find(|(n, _)| *n == name)
                .expect("unknown section");
            f();
        }
        None => {
            println!(
                "median of {RUNS} runs; reference measured in the same run; ratio = ours / reference"
            );
            for (name, _) in sections {
                let status = std::process::Command::new(std::env::current_exe().expect("exe"))
                    .arg(name)
                    .status()
                    .expect("section");
                if !status.success() {
                    println!("section {name} failed: {status}");
                }
            }
        }
    }
}
