//! Static files for `static-map = /prefix=dir` (and `static-index`).
//!
//! - **Safe paths**: the request path (already percent-decoded, so `%2e%2e` is `..` here) is
//!   split into segments; any `..`, NUL or backslash segment is a 404, and the file found is
//!   canonicalized and must still lie inside the (canonical) directory, so a symlink pointing
//!   out of it is a 404 too.
//! - **Headers**: `Content-Type` by extension, `Last-Modified`, `ETag` (mtime and size),
//!   `Accept-Ranges: bytes`.
//! - **Conditional requests**: `If-None-Match` (takes precedence), then `If-Modified-Since`:
//!   `304 Not Modified`.
//! - **Ranges**: one `bytes=` range (`a-b`, `a-`, `-n`) gives `206` with `Content-Range`; one
//!   that cannot be satisfied gives `416`; several ranges, or an `If-Range` that does not
//!   match, give the whole file.
//! - **Methods**: `GET` and `HEAD` (the worker sends no body for `HEAD`); others get `405`.
//! - **Never blocks the loop**: `stat`, `open` and `canonicalize` run through `rt::offload`,
//!   and the body is a stream whose every read is one offloaded `read` of at most 256 KiB
//!   into a reused buffer, so a 100 MiB file goes out with flat worker memory.
//!
//! A missing file is a 404 (the request does not fall through to the app, unlike uWSGI). So is
//! anything that is not a regular file (a FIFO, a socket, a device): it is opened with
//! `O_NONBLOCK` and checked with `fstat` before a byte is read, so it never blocks an offload
//! thread; 404 rather than 403 because it says nothing about what sits there. A path that is
//! not UTF-8 once percent-decoded never reaches this app: the router answers it 404 (see
//! `api::router`).

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use crate::api::{AppConfig, AppOption, Handler, OptionKind, Request, Response};
use crate::api::{format_http_date, parse_http_date};
use crate::coro::offload;

/// The most bytes one offloaded read asks for.
const READ_CHUNK: usize = 256 * 1024;

/// `static-index`: the file served for a directory.
const INDEX: &str = "static-index";

/// The options of the static-file server.
pub(crate) fn options() -> Vec<AppOption> {
    vec![
        AppOption::new(
            INDEX,
            OptionKind::Text,
            "File served when a static-map path is a directory (index.html).",
        )
        .repeatable(),
    ]
}

/// Builds the handler serving `dir`.
pub(crate) fn configure(dir: &Path, config: &AppConfig) -> Rc<dyn Handler> {
    // Canonicalized once here (worker start-up, not a request), so every request compares
    // against the real directory.
    let root = dir.canonicalize().unwrap_or_else(|e| {
        log::warn!("static-map directory {} is not usable: {e}", dir.display());
        dir.to_path_buf()
    });
    Rc::new(StaticFiles {
        root,
        index: config.all(INDEX).to_vec(),
    })
}

struct StaticFiles {
    root: PathBuf,
    index: Vec<String>,
}

impl Handler for StaticFiles {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        if !matches!(req.method(), "GET" | "HEAD") {
            return Response::error(405).header("Allow", "GET, HEAD");
        }
        let Some(relative) = safe_relative_path(req.path()) else {
            return Response::error(404);
        };
        let root = self.root.clone();
        let index = self.index.clone();
        match offload(move || open_inside(&root, &relative, &index)) {
            Ok(Ok(Some((file, meta, path)))) => respond(req, file, &meta, &path),
            Ok(Ok(None)) => Response::error(404),
            Ok(Err(e)) => {
                log::warn!("static: cannot read {}: {e}", req.path());
                Response::error(if e.kind() == io::ErrorKind::PermissionDenied {
                    403
                } else {
                    404
                })
            }
            Err(e) => {
                log::warn!("static: offload failed for {}: {e}", req.path());
                Response::error(500)
            }
        }
    }
}

/// The path's segments joined as a relative path, or `None` if any segment could climb out
/// (`..`) or smuggle something (NUL, backslash).
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s if s.contains(['\0', '\\']) => return None,
            s => relative.push(s),
        }
    }
    Some(relative)
}

/// Opens `root/relative` (or an index file if it is a directory) if it is a regular file whose
/// real path lies inside `root`. Runs on the offload pool.
fn open_inside(
    root: &Path,
    relative: &Path,
    index: &[String],
) -> io::Result<Option<(File, Metadata, PathBuf)>> {
    let candidate = root.join(relative);
    let mut real = match candidate.canonicalize() {
        Ok(real) => real,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !real.starts_with(root) {
        return Ok(None); // a symlink out of the directory
    }
    if real.is_dir() {
        let Some(found) = index
            .iter()
            .map(|name| real.join(name))
            .find_map(|p| p.canonicalize().ok().filter(|p| p.is_file()))
        else {
            return Ok(None);
        };
        if !found.starts_with(root) {
            return Ok(None);
        }
        real = found;
    }
    let file = match open_nonblocking(&real) {
        Ok(file) => file,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    // The type is checked on the open file (fstat), not on the name: what was stat'ed above
    // may have been swapped since.
    let meta = file.metadata()?;
    if !meta.is_file() {
        log::info!("static: refused a non-regular file {}", real.display());
        return Ok(None);
    }
    Ok(Some((file, meta, real)))
}

/// Opens `path` read-only without waiting: a FIFO without a writer (or a device) would block
/// `open(2)` itself, and with it an offload thread, forever. `O_NONBLOCK` changes nothing for
/// the regular files that are then served (their reads never wait on it).
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The answer for an opened file: 304, 206, 416 or 200 with a streaming body.
fn respond(req: &Request<'_>, file: File, meta: &Metadata, path: &Path) -> Response {
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let mtime = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let etag = format!(
        "\"{:x}-{:x}-{:x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        len
    );
    let last_modified = format_http_date(mtime.as_secs());
    let base = |status: u16| {
        Response::new(status)
            .header("Last-Modified", last_modified.clone())
            .header("ETag", etag.clone())
            .header("Accept-Ranges", "bytes")
    };
    if not_modified(req, &etag, mtime.as_secs()) {
        return base(304);
    }
    let content_type = content_type(path);
    let range = match req.header("range") {
        Some(range) if if_range_allows(req, &etag, &last_modified) => parse_range(range, len),
        _ => RangeRequest::Whole,
    };
    match range {
        RangeRequest::Whole => base(200)
            .header("Content-Type", content_type)
            .stream(FileChunks::new(file, 0, len), Some(len)),
        RangeRequest::Part(start, end) => base(206)
            .header("Content-Type", content_type)
            .header("Content-Range", format!("bytes {start}-{end}/{len}"))
            .stream(
                FileChunks::new(file, start, end - start + 1),
                Some(end - start + 1),
            ),
        RangeRequest::Unsatisfiable => Response::error(416)
            .header("Content-Range", format!("bytes */{len}"))
            .header("Accept-Ranges", "bytes"),
    }
}

/// `If-None-Match` when present (weak comparison), else `If-Modified-Since`.
fn not_modified(req: &Request<'_>, etag: &str, mtime_secs: u64) -> bool {
    if let Some(tags) = req.header("if-none-match") {
        return tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    req.header("if-modified-since")
        .and_then(parse_http_date)
        .is_some_and(|since| mtime_secs <= since)
}

/// An `If-Range` lets the range through only if it names the current ETag or date.
fn if_range_allows(req: &Request<'_>, etag: &str, last_modified: &str) -> bool {
    req.header("if-range")
        .is_none_or(|v| v.trim() == etag || v.trim() == last_modified)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Whole,
    /// Inclusive byte offsets.
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses a `Range` header for a file of `len` bytes. Anything but one well-formed `bytes=`
/// range is ignored (the whole file goes out), as RFC 9110 allows.
fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match parse(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part(len.saturating_sub(n), len - 1),
            None => RangeRequest::Whole,
        },
        // `a-`: from a to the end.
        (false, true) => match parse(first) {
            Some(a) if a < len => RangeRequest::Part(a, len - 1),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Whole,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(a), Some(b)) if a <= b && a < len => RangeRequest::Part(a, b.min(len - 1)),
            (Some(a), Some(b)) if a <= b => RangeRequest::Unsatisfiable,
            _ => RangeRequest::Whole,
        },
        (true, true) => RangeRequest::Whole,
    }
}

/// Streams `left` bytes of a file from `start`, each read offloaded, into one reused buffer.
struct FileChunks {
    file: Option<File>,
    skip: u64,
    left: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl FileChunks {
    fn new(file: File, start: u64, len: u64) -> FileChunks {
        FileChunks {
            file: Some(file),
            skip: start,
            left: len,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Refills the buffer with one offloaded read (the seek too, the first time).
    fn refill(&mut self) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("static file reader used after a failed read"))?;
        let mut buf = std::mem::take(&mut self.buf);
        let want = usize::try_from(self.left).map_or(READ_CHUNK, |left| left.min(READ_CHUNK));
        let skip = std::mem::take(&mut self.skip);
        let (file, buf, read) = offload(move || {
            let mut file = file;
            buf.resize(want, 0);
            let read = seek_to(&mut file, skip).and_then(|()| file.read(&mut buf));
            (file, buf, read)
        })?;
        let n = read?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "static file shrank while being sent",
            ));
        }
        self.file = Some(file);
        self.buf = buf;
        self.buf.truncate(n);
        self.pos = 0;
        self.left -= n as u64;
        Ok(())
    }
}

fn seek_to(file: &mut File, offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))?;
    }
    Ok(())
}

impl Read for FileChunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.left == 0 {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `Content-Type` by file extension; `application/octet-stream` when unknown.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "text" | "log" | "ini" | "toml" | "rs" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ResponseBody;

    /// A fresh directory for one test, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("rcontainer-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn paths_that_climb_out_are_refused() {
        assert_eq!(
            safe_relative_path("/a/./b//c"),
            Some(PathBuf::from("a/b/c"))
        );
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative_path("/../Cargo.toml"), None);
        assert_eq!(safe_relative_path("/a/../../x"), None);
        assert_eq!(safe_relative_path("/a\\..\\x"), None);
        assert_eq!(safe_relative_path("/a\0"), None);
    }

    #[test]
    fn single_byte_ranges_parse_and_the_rest_is_ignored() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Part(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), RangeRequest::Part(0, 99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeRequest::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=200-300", 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), RangeRequest::Whole);
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type(Path::new("a/b.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }

    fn body_of(response: Response) -> Vec<u8> {
        match response.into_parts().2 {
            ResponseBody::Bytes(b) => b.into_owned(),
            ResponseBody::Stream { mut reader, .. } => {
                let mut out = Vec::new();
                reader.read_to_end(&mut out).unwrap();
                out
            }
        }
    }

    #[test]
    fn files_are_served_with_ranges_and_conditional_answers() {
        let dir = Scratch::new("static-unit");
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("data.bin"), &data).unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>hi</p>").unwrap();
        let config = AppConfig::from_values([(INDEX, "index.html")]);
        let app = configure(dir.path(), &config);
        let get = |uri: &str, headers: &[(&str, &str)]| {
            let mut b = Request::builder("GET", uri);
            for (n, v) in headers {
                b = b.header(n, v);
            }
            app.handle(&mut b.build())
        };
        let whole = get("/data.bin", &[]);
        assert_eq!(whole.status(), 200);
        let etag = whole.header_value("etag").unwrap().to_string();
        let modified = whole.header_value("last-modified").unwrap().to_string();
        assert_eq!(body_of(whole), data);
        let part = get("/data.bin", &[("Range", "bytes=299990-300009")]);
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.header_value("content-range"),
            Some("bytes 299990-300009/600000")
        );
        assert_eq!(body_of(part), &data[299_990..300_010]);
        assert_eq!(get("/data.bin", &[("If-None-Match", &etag)]).status(), 304);
        assert_eq!(
            get("/data.bin", &[("If-Modified-Since", &modified)]).status(),
            304
        );
        let old = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            get("/data.bin", &[("If-Modified-Since", old)]).status(),
            200
        );
        assert_eq!(
            get("/data.bin", &[("Range", "bytes=700000-")]).status(),
            416
        );
        let index = get("/", &[]);
        assert_eq!(
            index.header_value("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(body_of(index), b"<p>hi</p>");
        assert_eq!(get("/missing", &[]).status(), 404);
        assert_eq!(get("/../Cargo.toml", &[]).status(), 404);
    }

    #[test]
    fn a_fifo_is_a_404_without_blocking() {
        let dir = Scratch::new("static-fifo-unit");
        nix::unistd::mkfifo(
            &dir.path().join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("pipe"), dir.path().join("link")).unwrap();
        let app = configure(dir.path(), &AppConfig::default());
        for path in ["/pipe", "/link"] {
            let response = app.handle(&mut Request::builder("GET", path).build());
            assert_eq!(response.status(), 404, "{path}");
        }
    }

    #[test]
    fn a_symlink_out_of_the_directory_is_a_404() {
        let outside = Scratch::new("static-outside");
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = Scratch::new("static-root");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("real"), "r").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("inner")).unwrap();
        let app = configure(dir.path(), &AppConfig::default());
        let get = |uri: &str| app.handle(&mut Request::builder("GET", uri).build());
        assert_eq!(get("/link").status(), 404);
        assert_eq!(get("/inner").status(), 200);
        let post = app.handle(&mut Request::builder("POST", "/real").build());
        assert_eq!(post.status(), 405);
    }
}
