//! Runtime tests with real sockets, real threads and, for the stack overflow, a child process.
//! Each test builds its own runtime on its own test thread. No timing assertions beyond "this
//! happened before that".

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::sys::rerun;

fn runtime(max: usize) -> Runtime {
    Runtime::new(RuntimeConfig {
        stack_size: 64 * 1024,
        max_coroutines: max,
        max_tasks: max,
        offload_threads: 2,
    })
    .expect("runtime")
}

/// Counts drops, to prove destructors ran.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn thousands_of_sleepers_wake_in_deadline_order() {
    let mut rt = runtime(3000);
    let woke: Rc<RefCell<Vec<Instant>>> = Rc::default();
    // Every coroutine starts (and parks) well before the first deadline.
    let base = Instant::now() + Duration::from_millis(100);
    let mut seed = 12345u64;
    for _ in 0..3000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let ms = (seed >> 33) % 200;
        let woke = woke.clone();
        rt.spawn(move || {
            let deadline = base + Duration::from_millis(ms);
            sleep_until(deadline);
            assert!(Instant::now() >= deadline, "woke early");
            woke.borrow_mut().push(deadline);
        })
        .expect("spawn");
    }
    while rt.live() > 0 {
        rt.turn(None).expect("turn");
    }
    let woke = woke.borrow();
    assert_eq!(woke.len(), 3000);
    assert!(
        woke.windows(2).all(|w| w[0] <= w[1]),
        "sleepers woke out of deadline order"
    );
}

#[test]
fn a_reader_parks_while_another_coroutine_runs() {
    let rt = runtime(4);
    let (a, b) = UnixStream::pair().expect("pair");
    let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let log_r = log.clone();
    let reader = rt
        .spawn(move || {
            log_r.borrow_mut().push("reader waits");
            let mut buf = [0u8; 5];
            (&a).read_exact(&mut buf).expect("read");
            log_r.borrow_mut().push("reader got data");
            buf
        })
        .expect("spawn");
    let log_w = log.clone();
    rt.spawn(move || {
        log_w.borrow_mut().push("writer runs");
        sleep(Duration::from_millis(5));
        b.write_all(b"hello").expect("write");
    })
    .expect("spawn");
    assert_eq!(&reader.join().expect("join"), b"hello");
    assert_eq!(
        *log.borrow(),
        ["reader waits", "writer runs", "reader got data"]
    );
}

#[test]
fn join_returns_the_value_and_propagates_a_panic() {
    let mut rt = runtime(8);
    let outcome = rt.block_on(|| {
        let ok = spawn(|| 6 * 7);
        let bad = spawn(|| -> u32 { panic!("boom in child") });
        (ok.join(), bad.join())
    });
    let (ok, bad) = outcome.expect("parent");
    assert_eq!(ok.expect("child value"), 42);
    let err = bad.expect_err("child panicked");
    assert!(err.is_panic());
    assert_eq!(err.message(), Some("boom in child"));
}

#[test]
fn a_detached_coroutine_runs_and_its_panic_stays_inside_it() {
    let mut rt = runtime(4);
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    rt.spawn_detached(move || r.set(r.get() + 1))
        .expect("spawn");
    rt.spawn_detached(|| panic!("detached handler bug"))
        .expect("spawn");
    let r = ran.clone();
    rt.spawn_detached(move || r.set(r.get() + 1))
        .expect("spawn");
    while rt.live() > 0 {
        rt.turn(None).expect("turn");
    }
    assert_eq!(ran.get(), 2);
}

#[test]
fn a_panicking_coroutine_does_not_stop_the_others() {
    let rt = runtime(8);
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let bad = rt.spawn(|| panic!("handler bug")).expect("spawn");
    let good = rt
        .spawn(move || {
            sleep(Duration::from_millis(2));
            d.set(true);
        })
        .expect("spawn");
    assert!(bad.join().expect_err("panicked").is_panic());
    good.join().expect("good one finished");
    assert!(done.get());
}

#[test]
fn timeout_cancels_and_destructors_run() {
    let mut rt = runtime(4);
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let (r, after) = rt
        .block_on(move || {
            let r = timeout(Duration::from_millis(10), || {
                let _guard = DropCounter(d.clone());
                sleep(Duration::from_secs(10));
                "finished"
            });
            let quick = timeout(Duration::from_secs(10), || "quick");
            (r, quick)
        })
        .expect("block_on");
    assert_eq!(r, Err(Elapsed));
    assert_eq!(after, Ok("quick"));
    assert_eq!(
        drops.get(),
        1,
        "the guard inside the timed-out closure was dropped"
    );
}

#[test]
fn a_timeout_of_duration_max_means_forever() {
    let mut rt = runtime(2);
    let r = rt
        .block_on(|| timeout(Duration::MAX, || 7))
        .expect("block_on");
    assert_eq!(r, Ok(7));
}

#[test]
fn nested_timeouts_end_at_the_scope_that_expired() {
    let mut rt = runtime(4);
    let (outer, inner_ran_out) = rt
        .block_on(|| {
            let mut inner_result = None;
            let outer = timeout(Duration::from_millis(10), || {
                inner_result = Some(timeout(Duration::from_secs(10), || {
                    sleep(Duration::from_secs(10))
                }));
            });
            (outer, inner_result)
        })
        .expect("block_on");
    assert_eq!(outer, Err(Elapsed));
    assert!(
        inner_ran_out.is_none(),
        "the inner scope was unwound by the outer deadline"
    );
}

#[test]
fn offload_runs_on_another_thread_and_wakes_the_right_coroutine() {
    let rt = runtime(8);
    let loop_thread = std::thread::current().id();
    let handles: Vec<_> = (0..4u64)
        .map(|i| {
            rt.spawn(move || {
                offload(move || {
                    std::thread::sleep(Duration::from_millis(20 - 5 * i));
                    (i, std::thread::current().id())
                })
                .expect("offload")
            })
            .expect("spawn")
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (got, thread) = h.join().expect("join");
        assert_eq!(got, i as u64, "each coroutine got its own job's result");
        assert_ne!(thread, loop_thread);
    }
}

#[test]
fn wait_remote_gets_the_answer_another_thread_completes_and_an_error_when_it_is_dropped() {
    let mut rt = runtime(2);
    let (tx, rx) = std::sync::mpsc::channel::<(u32, Completion<u32>)>();
    let remote = std::thread::spawn(move || {
        for (n, completion) in rx {
            if n == 0 {
                drop(completion);
            } else {
                completion.complete(n * 2);
            }
        }
    });
    let answers = rt
        .block_on(move || {
            let ask = |n: u32| {
                wait_remote(|c| tx.send((n, c)).map_err(|_| io::Error::other("remote gone")))
            };
            (
                ask(21).expect("answered"),
                ask(0).expect_err("dropped").kind(),
            )
        })
        .expect("coroutine");
    assert_eq!(answers, (42, io::ErrorKind::BrokenPipe));
    remote.join().expect("remote thread");
}

#[test]
fn offload_reraises_the_jobs_panic_in_the_coroutine() {
    let mut rt = runtime(2);
    let err = rt
        .block_on(|| offload(|| -> u8 { panic!("job failed") }))
        .expect_err("panic propagates");
    assert_eq!(err.message(), Some("job failed"));
}

#[test]
fn connect_to_a_closed_port_fails_cleanly() {
    let mut rt = runtime(2);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = rt
        .block_on(move || TcpStream::connect(("127.0.0.1", port)).map(|_| ()))
        .expect("coroutine")
        .expect_err("nothing listens there");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn connect_accept_and_echo_between_coroutines() {
    let mut rt = runtime(8);
    let listener =
        CoListener::from_std_tcp(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .expect("listener");
    let Addr::Tcp(addr) = listener.local_addr().expect("addr") else {
        panic!("tcp")
    };
    let server = rt
        .spawn(move || {
            let (conn, peer) = listener.accept().expect("accept");
            assert!(matches!(peer, Addr::Tcp(_)));
            let mut buf = [0u8; 4];
            (&conn).read_exact(&mut buf).expect("read");
            conn.write_all(&buf).expect("echo");
            conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
        })
        .expect("spawn");
    let reply = rt
        .block_on(move || {
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.write_all(b"ping").expect("write");
            let mut reply = Vec::new();
            conn.read_to_end(&mut reply).expect("read");
            reply
        })
        .expect("client");
    server.join().expect("server");
    assert_eq!(reply, b"ping");
}

#[test]
fn listeners_adopted_from_raw_fds_accept_tcp_and_unix() {
    let mut rt = runtime(8);
    let dir = std::env::temp_dir().join(format!("rcontainer-coro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("listener.sock");
    let _ = std::fs::remove_file(&path);
    let unix_fd: std::os::fd::OwnedFd = std::os::unix::net::UnixListener::bind(&path)
        .expect("bind unix")
        .into();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let tcp_addr = tcp.local_addr().expect("addr");
    let tcp_fd: std::os::fd::OwnedFd = tcp.into();
    let unix_listener = CoListener::from_fd(unix_fd).expect("unix listener");
    let tcp_listener = CoListener::from_fd(tcp_fd).expect("tcp listener");
    assert!(matches!(
        unix_listener.local_addr(),
        Ok(Addr::Unix(Some(_)))
    ));
    for listener in [unix_listener, tcp_listener] {
        rt.spawn_detached(move || {
            let (conn, _) = listener.accept().expect("accept");
            conn.write_all(b"hi").expect("write");
        })
        .expect("spawn");
    }
    let p = path.clone();
    let got = rt
        .block_on(move || {
            let mut out = Vec::new();
            for mut conn in [
                CoStream::from(UnixStream::connect(&p).expect("unix")),
                CoStream::from(TcpStream::connect(tcp_addr).expect("tcp")),
            ] {
                let mut buf = Vec::new();
                conn.read_to_end(&mut buf).expect("read");
                out.push(buf);
            }
            out
        })
        .expect("client");
    assert_eq!(got, [b"hi".to_vec(), b"hi".to_vec()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_writer_parks_on_a_full_socket_until_the_reader_drains_it() {
    let rt = runtime(4);
    let (a, b) = UnixStream::pair().expect("pair");
    const TOTAL: usize = 4 * 1024 * 1024; // far more than a socket buffer
    let writer = rt
        .spawn(move || {
            let chunk = vec![7u8; 64 * 1024];
            let mut sent = 0;
            while sent < TOTAL {
                a.write_all(&chunk).expect("write");
                sent += chunk.len();
            }
        })
        .expect("spawn");
    let reader = rt
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < TOTAL {
                got += b.read(&mut buf).expect("read");
            }
            got
        })
        .expect("spawn");
    writer.join().expect("writer");
    assert_eq!(reader.join().expect("reader"), TOTAL);
}

#[test]
fn a_read_timeout_fails_with_timed_out() {
    let mut rt = runtime(2);
    let (mut a, _b) = UnixStream::pair().expect("pair");
    let err = rt
        .block_on(move || {
            a.set_read_timeout(Some(Duration::from_millis(5)));
            a.read(&mut [0u8; 1]).map(|_| ())
        })
        .expect("coroutine")
        .expect_err("nothing to read");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn cancellation_returns_timed_out_at_the_park_and_the_answer_can_still_be_written() {
    let rt = runtime(4);
    let (server_end, mut client_end) = UnixStream::pair().expect("pair");
    let handler = rt
        .spawn(move || {
            cancel_at(
                Some(Instant::now() + Duration::from_millis(10)),
                CancelReason::Deadline,
            );
            let mut buf = [0u8; 16];
            let err = server_end
                .read(&mut buf)
                .expect_err("nothing arrives before the deadline");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert_eq!(take_cancel(), Some(CancelReason::Deadline));
            server_end
                .write_all(b"504")
                .expect("the connection code can still answer");
        })
        .expect("spawn");
    handler.join().expect("handler");
    let mut answer = [0u8; 3];
    client_end.read_exact(&mut answer).expect("read");
    assert_eq!(&answer, b"504");
}

#[test]
fn a_handler_sleeping_past_its_deadline_is_unwound_and_the_connection_answers_504() {
    let mut rt = runtime(4);
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let (server_end, mut client_end) = UnixStream::pair().expect("pair");
    rt.spawn_detached(move || {
        cancel_at(
            Some(Instant::now() + Duration::from_millis(5)),
            CancelReason::Deadline,
        );
        let outcome = catch_panic(|| {
            let _request_state = DropCounter(d);
            sleep(Duration::from_secs(10)); // infallible park: unwound at the deadline
        });
        assert!(matches!(
            outcome,
            Err(JoinError::Cancelled(CancelReason::Deadline))
        ));
        let status: &[u8] = if take_cancel().is_some() {
            b"504"
        } else {
            b"200"
        };
        server_end.write_all(status).expect("answer");
    })
    .expect("spawn");
    while rt.live() > 0 {
        rt.turn(None).expect("turn");
    }
    let mut answer = [0u8; 3];
    client_end.read_exact(&mut answer).expect("read");
    assert_eq!(&answer, b"504");
    assert_eq!(
        drops.get(),
        1,
        "the handler's state was dropped by the unwind"
    );
}

#[test]
fn a_cancelled_coroutine_that_parks_again_is_unwound() {
    let mut rt = runtime(4);
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let (a, _b) = UnixStream::pair().expect("pair");
    let h = rt
        .spawn(move || {
            let _guard = DropCounter(d);
            let mut buf = [0u8; 1];
            let first = a.read(&mut buf);
            assert_eq!(
                first.expect_err("cancelled").kind(),
                io::ErrorKind::ConnectionAborted
            );
            sleep(Duration::from_secs(10)); // ignores the error: unwound here
            unreachable!("a cancelled coroutine cannot sleep");
        })
        .expect("spawn");
    rt.turn(Some(Duration::ZERO)).expect("turn"); // it parks on the read
    rt.cancel(h.id(), CancelReason::Shutdown);
    match h.join() {
        Err(JoinError::Cancelled(CancelReason::Shutdown)) => {}
        other => panic!("expected a cancellation, got {other:?}"),
    }
    assert_eq!(drops.get(), 1);
}

#[test]
fn abort_unwinds_a_parked_coroutine() {
    let mut rt = runtime(4);
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let h = rt
        .spawn(move || {
            let _guard = DropCounter(d);
            // A handler-level catch must not swallow the unwind of a dropped coroutine.
            let r = catch_panic(|| sleep(Duration::from_secs(10)));
            unreachable!("the forced unwind passed through catch_panic: {r:?}");
        })
        .expect("spawn");
    rt.turn(Some(Duration::ZERO)).expect("turn");
    rt.abort(h.id());
    assert!(matches!(h.join(), Err(JoinError::Aborted)));
    assert_eq!(drops.get(), 1);
    assert_eq!(rt.live(), 0);
}

#[test]
fn dropping_the_runtime_unwinds_every_coroutine() {
    let drops = Rc::new(Cell::new(0));
    {
        let mut rt = runtime(16);
        for _ in 0..10 {
            let d = drops.clone();
            rt.spawn(move || {
                let _guard = DropCounter(d);
                sleep(Duration::from_secs(10));
            })
            .expect("spawn");
        }
        let never_started = drops.clone();
        rt.turn(Some(Duration::ZERO)).expect("turn");
        rt.spawn(move || drop(never_started)).expect("spawn");
    }
    assert_eq!(drops.get(), 10);
    assert_eq!(
        Rc::strong_count(&drops),
        1,
        "the never-started closure was dropped too"
    );
}

#[test]
fn drain_waits_for_coroutines_then_drops_the_rest() {
    let mut rt = runtime(4);
    let quick = rt.spawn(|| sleep(Duration::from_millis(5))).expect("spawn");
    let slow = rt.spawn(|| sleep(Duration::from_secs(30))).expect("spawn");
    let mut turns = 0;
    let dropped = rt
        .drain(Instant::now() + Duration::from_millis(50), || turns += 1)
        .expect("drain");
    assert_eq!(dropped, 1);
    assert!(turns > 0, "the per-turn hook ran");
    quick.join().expect("quick finished");
    assert!(matches!(slow.join(), Err(JoinError::Aborted)));
}

#[test]
fn spawning_beyond_the_limit_fails_instead_of_mapping_more() {
    let rt = runtime(2);
    let _a = rt.spawn(|| ()).expect("1");
    let _b = rt.spawn(|| ()).expect("2");
    let err = rt.spawn(|| ()).expect_err("limit");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(rt.free_slots(), 0);
}

#[test]
fn spawned_tasks_have_a_budget_of_their_own() {
    let mut rt = Runtime::new(RuntimeConfig {
        stack_size: 64 * 1024,
        max_coroutines: 3,
        max_tasks: 2,
        offload_threads: 1,
    })
    .expect("runtime");
    let outcome = rt
        .block_on(|| {
            let a = try_spawn(|| sleep(Duration::from_millis(20))).expect("task 1");
            drop(try_spawn(|| sleep(Duration::from_millis(20))).expect("task 2")); // detached
            let refused = try_spawn(|| ()).expect_err("the task budget is spent");
            // The owner's coroutines are counted apart: one is running this, two are free.
            let owner_free = super::sched::runtime()
                .map(|rt| rt.free_slots(super::budget::Budget::Owner))
                .expect("runtime");
            a.join().expect("task 1 ends");
            (refused, owner_free)
        })
        .expect("block_on");
    let (refused, owner_free) = outcome;
    assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
    let message = refused.to_string();
    assert!(
        message.contains("all 2 task slots") && message.contains("spawn-limit"),
        "{message}"
    );
    assert_eq!(owner_free, 2);
    // Tasks never take the owner's slots: all three are there for the worker's own use.
    let owned: Vec<_> = (0..3)
        .map(|_| rt.spawn(|| ()).expect("owner slot"))
        .collect();
    assert_eq!(rt.free_slots(), 0);
    drop(owned);
    while rt.live() > 0 {
        rt.turn(Some(Duration::from_millis(10))).expect("turn");
    }
    assert_eq!(
        rt.free_task_slots(),
        2,
        "finished tasks give their slots back"
    );
}

#[test]
fn rt_spawn_panics_with_the_budget_error() {
    let mut rt = Runtime::new(RuntimeConfig {
        stack_size: 64 * 1024,
        max_coroutines: 1,
        max_tasks: 0,
        offload_threads: 1,
    })
    .expect("runtime");
    let joined = rt.block_on(|| catch_panic(|| spawn(|| ())).map(drop));
    let Ok(Err(error)) = joined else {
        panic!("spawn beyond the budget must panic: {joined:?}");
    };
    let message = error.message().unwrap_or_default();
    assert!(
        message.starts_with("rt::spawn: spawn budget exhausted"),
        "{message}"
    );
}

#[test]
fn a_semaphore_limits_accepts_to_free_cores() {
    let rt = runtime(16);
    let listener =
        CoListener::from_std_tcp(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .expect("listener");
    let Addr::Tcp(addr) = listener.local_addr().expect("addr") else {
        panic!("tcp")
    };
    let cores = Semaphore::new(2);
    let busy = Rc::new(Cell::new(0usize));
    let peak = Rc::new(Cell::new(0usize));
    let (busy2, peak2) = (busy.clone(), peak.clone());
    let acceptor = rt
        .spawn(move || {
            for _ in 0..6 {
                let permit = cores.acquire().expect("permit");
                let (conn, _) = listener.accept().expect("accept");
                let (busy, peak) = (busy2.clone(), peak2.clone());
                spawn(move || {
                    let _permit = permit;
                    busy.set(busy.get() + 1);
                    peak.set(peak.get().max(busy.get()));
                    sleep(Duration::from_millis(5));
                    conn.write_all(b"ok").expect("write");
                    busy.set(busy.get() - 1);
                });
            }
        })
        .expect("spawn");
    let clients: Vec<_> = (0..6)
        .map(|_| {
            rt.spawn(move || {
                let mut c = TcpStream::connect(addr).expect("connect");
                let mut buf = Vec::new();
                c.read_to_end(&mut buf).expect("read");
                buf
            })
            .expect("spawn")
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client"), b"ok");
    }
    acceptor.join().expect("acceptor");
    assert_eq!(peak.get(), 2, "never more requests in flight than permits");
}

#[test]
fn channel_and_mutex_park_instead_of_blocking() {
    let mut rt = runtime(8);
    let total = rt
        .block_on(|| {
            let (tx, rx) = channel();
            let shared = Rc::new(Mutex::new(Vec::new()));
            for i in 0..3 {
                let (tx, shared) = (tx.clone(), shared.clone());
                spawn(move || {
                    let mut guard = shared.lock().expect("lock");
                    sleep(Duration::from_millis(1)); // held across a park: others wait
                    guard.push(i);
                    drop(guard);
                    tx.send(i).expect("send");
                });
            }
            drop(tx);
            let mut sum = 0;
            while let Ok(v) = rx.recv() {
                sum += v;
            }
            assert_eq!(shared.lock().expect("lock").len(), 3);
            sum
        })
        .expect("block_on");
    assert_eq!(total, 3);
}

#[test]
fn outside_a_coroutine_calls_fall_back_to_blocking() {
    // No runtime on this thread at all.
    let start = Instant::now();
    sleep(Duration::from_millis(2));
    assert!(start.elapsed() >= Duration::from_millis(2));
    assert_eq!(offload(|| 5).expect("inline"), 5);
    assert_eq!(timeout(Duration::from_secs(1), || 1), Ok(1));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"hi").expect("write");
    });
    let mut c = TcpStream::connect(addr).expect("blocking connect");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf)
        .expect("blocking read through poll(2)");
    assert_eq!(buf, b"hi");
    server.join().expect("server");
}

#[test]
fn a_second_runtime_on_one_thread_is_refused() {
    let _rt = runtime(1);
    let err = Runtime::new(RuntimeConfig::default()).expect_err("one per thread");
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
}

#[test]
fn stack_size_below_the_minimum_is_refused() {
    let cfg = RuntimeConfig {
        stack_size: 16 * 1024,
        ..RuntimeConfig::default()
    };
    let err = Runtime::new(cfg).expect_err("too small");
    assert!(err.to_string().contains("64 KiB"), "{err}");
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 4096]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[100])
}

/// The child's half of the overflow tests: overflows a labelled coroutine's stack, which ends
/// the process (it never returns).
fn overflow_a_coroutine_stack() -> ! {
    let mut rt = runtime(2);
    eprintln!("{}", rt.stack_summary());
    let _ = rt.block_on(|| {
        set_label(&["GET", "/deep"]);
        recurse(0)
    });
    unreachable!("the overflow must end the process");
}

#[test]
fn a_stack_overflow_is_reported_and_the_worker_exits() {
    const TEST: &str = "coro::tests::a_stack_overflow_is_reported_and_the_worker_exits";
    if rerun::is_child_for(TEST) {
        overflow_a_coroutine_stack();
    }
    let stderr = run_overflow_child(TEST, false);
    assert!(stderr.contains("\"GET /deep\""), "stderr: {stderr}");
}

#[test]
fn a_stack_overflow_is_reported_with_mprotect_guards_too() {
    const TEST: &str = "coro::tests::a_stack_overflow_is_reported_with_mprotect_guards_too";
    if rerun::is_child_for(TEST) {
        overflow_a_coroutine_stack();
    }
    // The layout used on kernels without MADV_GUARD_INSTALL (before 6.13).
    let stderr = run_overflow_child(TEST, true);
    assert!(stderr.contains("mprotect guards"), "stderr: {stderr}");
}

/// Re-runs this test binary on `test` as its child (`sys::rerun`'s marker, so only the child
/// overflows); returns its stderr after checking the report and the exit status. Never hangs:
/// the child is killed after 60 s.
fn run_overflow_child(test: &str, mprotect_guards: bool) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let mut command = std::process::Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(rerun::CHILD_ENV, test)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if mprotect_guards {
        command.env("RCONTAINER_TEST_MPROTECT_GUARDS", "1");
    }
    let mut child = command.spawn().expect("spawn child");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the overflowing child hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(
        status.code(),
        Some(crate::sys::fault::OVERFLOW_EXIT_CODE),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("coroutine stack overflow"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("`stack-size`"), "stderr: {stderr}");
    stderr
}

#[test]
fn join_all_of_three_300ms_calls_takes_about_300ms_not_900() {
    let mut rt = runtime(8);
    let started = Instant::now();
    let results = rt
        .block_on(|| {
            let calls: Vec<_> = (1..=3u64)
                .map(|n| {
                    spawn(move || {
                        sleep(Duration::from_millis(300));
                        n
                    })
                })
                .collect();
            join_all(calls)
        })
        .expect("block_on");
    let elapsed = started.elapsed();
    eprintln!("join_all of three 300 ms sleeps took {elapsed:?}");
    let values: Vec<u64> = results.into_iter().map(|r| r.expect("joined")).collect();
    assert_eq!(values, [1, 2, 3]);
}

#[test]
fn waiting_on_a_stale_io_token_fails_instead_of_parking_on_the_fd_that_took_its_slot() {
    let mut rt = runtime(2);
    let outcome = rt
        .block_on(|| {
            let inner = sched::in_coroutine().expect("in a coroutine");
            let nonblocking = || {
                let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
                a.set_nonblocking(true).expect("nonblocking");
                (mio::net::UnixStream::from_std(a), b)
            };
            let (mut gone, _peer) = nonblocking();
            let stale = inner.register_io(&mut gone).expect("register");
            inner.deregister_io(&mut gone, stale);
            // Takes the slot the first registration left.
            let (mut taker, _taker_peer) = nonblocking();
            let fresh = inner.register_io(&mut taker).expect("register");
            let waited = inner.wait_io(
                stale,
                super::reactor::Dir::Read,
                Some(Instant::now() + Duration::from_millis(50)),
            );
            inner.deregister_io(&mut taker, fresh);
            waited.map_err(|e| e.into_io())
        })
        .expect("block_on");
    let err = outcome.expect_err("a stale token cannot be waited on");
    assert_ne!(
        err.kind(),
        io::ErrorKind::TimedOut,
        "it parked on the other fd's slot: {err}"
    );
    assert!(err.to_string().contains("not registered"), "{err}");
}

/// What parking costs a coroutine in stack below its caller: the runtime's part of every
/// parked request (the scheduler's park, corosensei's switch). Bytes written on a fresh stack
/// (its pages start out zero), a count: 327 optimized, 2,199 in a debug build when written.
fn park_cost(park: fn()) -> (usize, usize) {
    let mut rt = runtime(2);
    rt.block_on(move || {
        let (_, written) = stack_written_by(park).expect("in a coroutine");
        (written, stack_pages().expect("in a coroutine"))
    })
    .expect("join")
}

#[test]
fn a_coroutine_parked_in_sleep_stays_on_the_one_page_it_started_on() {
    let bound = if cfg!(debug_assertions) { 3072 } else { 512 };
    for (what, park) in [
        ("sleep", (|| sleep(Duration::from_millis(1))) as fn()),
        ("yield_now", yield_now),
    ] {
        let (written, pages) = park_cost(park);
        assert!(written > 0, "{what}: nothing measured");
        assert!(
            written <= bound,
            "{what} took {written} bytes of stack, over {bound}"
        );
        assert_eq!(
            pages, 1,
            "{what}: a parked bare coroutine holds its top page only"
        );
    }
}
