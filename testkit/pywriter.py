"""
A native writer for live tests and the torture script: Python's sqlite3 module (native SQLite),
in every pattern a real server might use. Each transaction keeps the invariant of test/writer.ts
(money moves between two accounts far apart in the file; a ledger and its running totals agree).

  python3 testkit/pywriter.py DB '{"tps": 30, "checkpoint": "TRUNCATE", "every": 1, ...}'

Options (JSON): tps (number, 0 = no pause), checkpoint (PASSIVE|FULL|RESTART|TRUNCATE|null) run
after every `every` commits, connPerTx (open and close a connection for each transaction),
autocheckpoint (pages; SQLite's default 1000), synchronous (OFF|NORMAL|FULL), journal
(WAL|DELETE|TRUNCATE|PERSIST), vacuumEvery (commits), grow (bytes added per transaction, for fast
growth), shrinkEvery (commits: delete most of the ledger), switchEvery (commits: switch the journal
mode to DELETE and back to WAL), journalSizeLimit (bytes), trace (a file: one line "i a b x" per
committed transfer, and the table seq(i) holds the last one's i, for diagnosing a torn backup).
Stops cleanly on SIGTERM (between transactions) and prints the number of commits.
"""
import json, random, signal, sqlite3, sys, time

db = sys.argv[1]
o = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)

def connect():
    c = sqlite3.connect(db, timeout=30, isolation_level=None)
    c.execute('PRAGMA busy_timeout=30000')
    if o.get('synchronous'): c.execute(f"PRAGMA synchronous={o['synchronous']}")
    if o.get('autocheckpoint') is not None: c.execute(f"PRAGMA wal_autocheckpoint={o['autocheckpoint']}")
    if o.get('journalSizeLimit') is not None: c.execute(f"PRAGMA journal_size_limit={o['journalSizeLimit']}")
    return c

def tx(c, i):
    if i % 20 == 19:
        k = i % 7
        c.execute('BEGIN IMMEDIATE')
        c.execute(f'UPDATE totals SET n = n - (SELECT count(*) FROM ledger WHERE id % 7 = {k}), s = s - (SELECT coalesce(sum(amount), 0) FROM ledger WHERE id % 7 = {k})')
        c.execute(f'DELETE FROM ledger WHERE id % 7 = {k}')
        c.execute('COMMIT')
        return
    a = 1 + (i * 37) % 100
    b = 1 + (i * 61 + 13) % 100
    x = 1 + i % 50
    size = o.get('grow') or [10, 200, 1500, 5000, 9000][i % 5]
    c.execute('BEGIN IMMEDIATE')
    c.execute('UPDATE accounts SET balance = balance - ? WHERE id = ?', (x, a))
    c.execute('INSERT INTO ledger(amount, payload) VALUES (?, randomblob(?))', (x, size))
    c.execute('UPDATE totals SET n = n + 1, s = s + ?', (x,))
    c.execute('UPDATE accounts SET balance = balance + ? WHERE id = ?', (x, b))
    if trace: c.execute('UPDATE seq SET i = ?', (i,))
    c.execute('COMMIT')
    if trace: trace.write(f'{i} {a} {b} {x}\n')

def shrink(c):
    c.execute('BEGIN IMMEDIATE')
    c.execute('DELETE FROM ledger WHERE id NOT IN (SELECT id FROM ledger ORDER BY id DESC LIMIT 200)')
    c.execute('UPDATE totals SET n = (SELECT count(*) FROM ledger), s = (SELECT coalesce(sum(amount), 0) FROM ledger)')
    c.execute('COMMIT')

def retry(fn):
    for _ in range(200):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if 'locked' not in str(e) and 'busy' not in str(e): raise
            time.sleep(0.005)
    raise RuntimeError('database stayed locked')

trace = open(o['trace'], 'w', buffering=1) if o.get('trace') else None
if trace:
    t = sqlite3.connect(db, isolation_level=None)
    t.execute('CREATE TABLE IF NOT EXISTS seq(i INTEGER)')
    t.execute('INSERT INTO seq SELECT -1 WHERE NOT EXISTS (SELECT 1 FROM seq)')
    t.close()
tps = o.get('tps', 0)
every = o.get('every', 1)
c = None if o.get('connPerTx') else connect()
if c is not None and o.get('journal'): c.execute(f"PRAGMA journal_mode={o['journal']}")
started = time.monotonic()
i = 0
while not stop:
    if tps:
        due = started + i / tps
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
            continue
    conn = c or connect()
    try:
        retry(lambda: tx(conn, i))
        i += 1
        if o.get('shrinkEvery') and i % o['shrinkEvery'] == 0: retry(lambda: shrink(conn))
        if o.get('vacuumEvery') and i % o['vacuumEvery'] == 0: retry(lambda: conn.execute('VACUUM'))
        if o.get('switchEvery') and i % o['switchEvery'] == 0:
            retry(lambda: conn.execute('PRAGMA journal_mode=DELETE').fetchall())
            retry(lambda: conn.execute('PRAGMA journal_mode=WAL').fetchall())
        if o.get('checkpoint') and i % every == 0:
            retry(lambda: conn.execute(f"PRAGMA wal_checkpoint({o['checkpoint']})").fetchall())
    finally:
        if c is None: conn.close()
if c is not None: c.close()
print(i)
