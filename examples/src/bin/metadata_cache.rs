//! The indexed metadata cache: a cache of source-file metadata in front of
//! a real SQLite database, with secondary indexes, queries, a full load
//! at start and incremental synchronisation.
//!
//! `cargo run -p cache-examples --bin metadata_cache` creates and fills a
//! database, loads it whole, answers "python files defining `main` under
//! `src/`" from the indexes (checked against SQL), picks up another
//! connection's inserts, updates and deletes at the next sync, and keeps
//! serving while the database is locked by another connection's exclusive
//! transaction and while its file is moved away. It exits non-zero if any
//! answer differs from the database's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cache_core::index::Query;
use cache_core::source::{Changes, Source, SourceError};
use cache_core::{Cache, Pattern, Startup, SyncOptions, Synced};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// What the cache holds for each file.
#[derive(Debug, Clone, PartialEq)]
struct FileMetadata {
    path: String,
    language: String,
    functions: Vec<String>,
    classes: Vec<String>,
    documents: Vec<String>,
}

/// The database as the cache sees it. It opens a connection for each call,
/// as a tool sharing the file with others would, and waits at most
/// `busy` for another connection's lock.
struct SqliteSource {
    path: PathBuf,
    busy: Duration,
}

fn failed(e: rusqlite::Error) -> SourceError {
    SourceError::Failed(e.to_string())
}

fn list(text: String) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl SqliteSource {
    fn open(&self) -> Result<Connection, SourceError> {
        // No CREATE flag: a file moved away is an error, not a new,
        // empty database.
        let db = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(failed)?;
        db.busy_timeout(self.busy).map_err(failed)?;
        Ok(db)
    }

    fn row(db: &Connection, path: &str) -> Result<Option<FileMetadata>, SourceError> {
        db.query_row(
            "SELECT path, language, functions, classes, documents FROM files WHERE path = ?1",
            [path],
            read_row,
        )
        .optional()
        .map_err(failed)
    }
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileMetadata> {
    Ok(FileMetadata {
        path: r.get(0)?,
        language: r.get(1)?,
        functions: list(r.get(2)?),
        classes: list(r.get(3)?),
        documents: list(r.get(4)?),
    })
}

impl Source<String, FileMetadata> for SqliteSource {
    fn load(&self, key: &String) -> Result<Option<FileMetadata>, SourceError> {
        Self::row(&self.open()?, key)
    }

    fn load_all(&self) -> Result<(Vec<(String, FileMetadata)>, String), SourceError> {
        let mut db = self.open()?;
        // One read transaction: the rows and the cursor agree.
        let tx = db.transaction().map_err(failed)?;
        let cursor: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM change_log", [], |r| {
                r.get(0)
            })
            .map_err(failed)?;
        let mut st = tx
            .prepare("SELECT path, language, functions, classes, documents FROM files")
            .map_err(failed)?;
        let all = st
            .query_map([], read_row)
            .map_err(failed)?
            .map(|r| r.map(|m| (m.path.clone(), m)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        Ok((all, cursor.to_string()))
    }

    fn changes(&self, cursor: &str) -> Result<Changes<String, FileMetadata>, SourceError> {
        let since: i64 = cursor
            .parse()
            .map_err(|_| SourceError::Failed(format!("bad cursor {cursor:?}")))?;
        let mut db = self.open()?;
        let tx = db.transaction().map_err(failed)?;
        let mut st = tx
            .prepare("SELECT MAX(seq), path FROM change_log WHERE seq > ?1 GROUP BY path")
            .map_err(failed)?;
        let touched = st
            .query_map([since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(failed)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let (mut upserts, mut deletes, mut next) = (Vec::new(), Vec::new(), since);
        for (seq, path) in touched {
            next = next.max(seq);
            match Self::row(&tx, &path)? {
                Some(m) => upserts.push((path, m)),
                None => deletes.push(path),
            }
        }
        Ok(Changes::new(upserts, deletes, next.to_string()))
    }
}

/// Creates the database: the files table, and a change log that triggers
/// fill on every insert, update and delete.
fn create(path: &Path, files: usize) -> rusqlite::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut db = Connection::open(path)?;
    db.execute_batch(
        "CREATE TABLE files (path TEXT PRIMARY KEY, language TEXT NOT NULL,
             functions TEXT NOT NULL, classes TEXT NOT NULL, documents TEXT NOT NULL);
         CREATE TABLE change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL);
         CREATE TRIGGER files_ins AFTER INSERT ON files
             BEGIN INSERT INTO change_log (path) VALUES (NEW.path); END;
         CREATE TRIGGER files_upd AFTER UPDATE ON files
             BEGIN INSERT INTO change_log (path) VALUES (OLD.path), (NEW.path); END;
         CREATE TRIGGER files_del AFTER DELETE ON files
             BEGIN INSERT INTO change_log (path) VALUES (OLD.path); END;",
    )?;
    let tx = db.transaction()?;
    let (langs, dirs) = (["python", "rust", "javascript"], ["src", "tests", "tools"]);
    for i in 0..files {
        let lang = langs[i % 3];
        let ext = ["py", "rs", "js"][i % 3];
        let path = format!("{}/pkg{}/file{i}.{ext}", dirs[i / 3 % 3], i % 17);
        let mut functions = vec![format!("helper{}", i % 50), "parse".to_string()];
        if i % 4 == 0 {
            functions.push("main".into());
        }
        tx.execute(
            "INSERT INTO files VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                path,
                lang,
                functions.join(","),
                format!("Model{}", i % 30),
                format!("docs/guide{}.md", i % 10)
            ],
        )?;
    }
    tx.commit()
}

/// The answer SQL gives to the example's query, to check the cache's.
fn sql_answer(path: &Path, limit: usize) -> rusqlite::Result<Vec<String>> {
    let db = Connection::open(path)?;
    let mut st = db.prepare(
        "SELECT path FROM files WHERE language = 'python'
           AND ',' || functions || ',' LIKE '%,main,%' AND path GLOB 'src/*'
         ORDER BY path LIMIT ?1",
    )?;
    st.query_map([limit as i64], |r| r.get(0))?.collect()
}

fn python_mains(cache: &Cache<String, FileMetadata>, limit: usize) -> Vec<String> {
    let q = Query::new()
        .eq("language", "python")
        .eq("function", "main")
        .matching(Pattern::new("src/*").expect("a valid pattern"))
        .limit(limit);
    let found = cache.query(&q).expect("the indexes exist");
    found.into_iter().map(|(k, _)| k).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("metadata_cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db_path = dir.join("metadata.db");
    let files = 20_000;
    create(&db_path, files)?;

    let cache: Cache<String, FileMetadata> = Cache::builder()
        .name("file_metadata")
        .capacity(100_000)
        .index("language", |m: &FileMetadata| vec![m.language.clone()])
        .index("function", |m: &FileMetadata| m.functions.clone())
        .index("class", |m: &FileMetadata| m.classes.clone())
        .index("document", |m: &FileMetadata| m.documents.clone())
        .build();
    let source = SqliteSource {
        path: db_path.clone(),
        busy: Duration::from_millis(100),
    };
    // A service would sync on `SyncOptions::configured(&cache)` (the
    // `sync_interval` setting); the example syncs when it wants to.
    let t = Instant::now();
    let synced = Synced::start(
        cache.clone(),
        source,
        SyncOptions::on_demand().startup(Startup::Blocking),
    );
    let s = synced.stats();
    println!(
        "full load: {} files in {:?} (syncs {}, loads {})",
        cache.len(),
        t.elapsed(),
        s.syncs,
        s.loads
    );
    assert_eq!((cache.len(), s.syncs, s.loads), (files, 1, 0));

    let t = Instant::now();
    let mains = python_mains(&cache, 10);
    let took = t.elapsed();
    println!("python files defining main under src/ (first 10, {took:?}):");
    for p in &mains {
        println!("  {p}");
    }
    assert_eq!(
        mains,
        sql_answer(&db_path, 10)?,
        "the query agrees with SQL"
    );
    let sizes = cache.index_sizes();
    println!("index sizes: {sizes:?}");

    // Another connection writes; the cache answers as before until it syncs.
    let writer = Connection::open(&db_path)?;
    let updated = mains[0].clone();
    let deleted = mains[1].clone();
    writer.execute(
        "INSERT INTO files VALUES ('src/aaa/new.py', 'python', 'main', '', '')",
        [],
    )?;
    writer.execute(
        "UPDATE files SET functions = 'parse' WHERE path = ?1",
        [&updated],
    )?;
    writer.execute("DELETE FROM files WHERE path = ?1", [&deleted])?;
    assert_eq!(python_mains(&cache, 10), mains, "no sync yet");
    let report = synced.sync_now()?;
    println!(
        "sync: {} upserted, {} deleted in {:?}",
        report.upserts, report.deletes, report.took
    );
    assert_eq!((report.full, report.upserts, report.deletes), (false, 2, 1));
    let after = python_mains(&cache, 10);
    assert_eq!(
        after,
        sql_answer(&db_path, 10)?,
        "the sync reached the indexes"
    );
    assert_eq!(after[0], "src/aaa/new.py");
    assert!(!after.contains(&updated) && !after.contains(&deleted));
    assert!(!cache.contains_key(&deleted));
    let meta = synced.get(&updated)?.expect("still a file");
    assert_eq!(meta.functions, vec!["parse".to_string()]);

    // Another connection holds an exclusive transaction: the sync fails,
    // is counted, and the cache keeps serving what it held.
    writer.execute_batch("BEGIN EXCLUSIVE")?;
    writer.execute("DELETE FROM files WHERE path = ?1", [&after[1]])?;
    let failures = synced.stats().failures;
    let e = synced.sync_now().expect_err("the database is locked");
    println!("sync while locked: {e}");
    assert!(e.to_string().contains("locked"), "{e}");
    assert_eq!(synced.stats().failures, failures + 1);
    assert_eq!(python_mains(&cache, 10), after, "served from the cache");
    assert!(synced.get(&after[1])?.is_some(), "a hit needs no database");
    writer.execute_batch("COMMIT")?;
    synced.sync_now()?;
    assert!(!cache.contains_key(&after[1]), "the next sync applies it");
    let expected = sql_answer(&db_path, 10)?;

    // The file moves away: syncs and misses fail, hits are served.
    let moved = dir.join("metadata.db.moved");
    std::fs::rename(&db_path, &moved)?;
    let e = synced.sync_now().expect_err("the file is gone");
    println!("sync with the file moved away: {e}");
    assert_eq!(synced.stats().failures, failures + 2);
    assert_eq!(python_mains(&cache, 10), expected);
    assert!(synced.get(&expected[0])?.is_some());
    assert!(synced.get(&"src/absent.py".to_string()).is_err());
    assert!(!db_path.exists(), "nothing created in its place");
    std::fs::rename(&moved, &db_path)?;
    let r = synced.sync_now()?;
    assert_eq!((r.upserts, r.deletes), (0, 0));

    let s = synced.stats();
    println!(
        "stats: {} syncs, {} failed, {} read-through loads, last sync {:?} ago (took {:?}), cursor {:?}",
        s.syncs,
        s.failures,
        s.loads,
        s.last_success
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default(),
        s.last.as_ref().map(|l| l.took).unwrap_or_default(),
        s.cursor.as_deref().unwrap_or("")
    );
    assert_eq!((s.syncs, s.failures), (4, 2));
    drop(synced);
    std::fs::remove_dir_all(&dir)?;
    println!("ok");
    Ok(())
}
