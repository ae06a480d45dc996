/**
 * The commands' table: every command, its argument, its options and its examples. The parser and
 * --help (args.ts) are made from it.
 */
import type { CommandSpec, OptionSpec } from '../args.ts';

export type CommandName = 'backup' | 'restore' | 'verify' | 'keygen' | 'list' | 'prune' | 'check' | 'replicate';

const opt = (name: string, help: string, value?: string, repeatable?: boolean, short?: string): OptionSpec => ({ name, help, value, repeatable, short });
const DB = opt('db', 'Database path (overrides storage.database_path in blufio.toml)', '<path>');
const CONFIG = opt('config', 'Read this blufio.toml instead of the usual ones', '<file>', false, 'c');
const QUIET = opt('quiet', 'Print nothing but errors', undefined, false, 'q');
const JSON_OUT = opt('json', 'Print one JSON object with the result on stdout');
const TIMEOUT = opt('timeout', 'Give up on the whole job after this long, leaving nothing behind (default: no limit; a live database\'s retries stop after 60 s)', '<seconds>');
const WORK_DIR = opt('work-dir', 'Where a whole uncompressed copy is staged for .gz, .age and - (default: beside a .gz file, a private folder in $TMPDIR for .age and -; env BLUFIO_WORK_DIR)', '<dir>');
const IDENTITY = opt('identity', 'Decrypt an .age backup with this age key file (repeatable; default: backup.age_identity_file, env BLUFIO_AGE_IDENTITY_FILE)', '<file>', true, 'i');
const PROGRESS = opt('progress', 'Show progress even when stderr is not a terminal: a plain line every 5 s, for logs (or BLUFIO_PROGRESS=lines; =none: never)');
const SLEEP = opt('sleep-ms', 'Pause between copy steps in ms (default: 10 while another process has the database open, else 0)', '<n>');
const AT = opt('at', 'From a set: the newest backup at or before this time (ISO 8601, UTC unless a zone is given)', '<time>');
const SERIES = opt('series', 'From a set holding several databases\' backups: whose (default: the database file\'s name without .db)', '<name>');

/** Every command, its argument and the options that mean something for it (help is made from this). */
export const COMMANDS: CommandSpec[] = [
  {
    name: 'backup', arg: '<path>',
    summary: 'Back up the database to <path>, s3://BUCKET/KEY, or a set (a folder or prefix ending in /: timestamped, differential). .gz compresses, .age encrypts, - writes to stdout.',
    options: [
      DB, CONFIG,
      opt('force', 'Replace an existing file at <path>', undefined, false, 'f'),
      opt('no-verify', 'Skip the integrity check of the finished backup (it is checked unless this is given)'),
      opt('recipient', 'Encrypt to this age public key (repeatable; default: backup.age_recipients, env BLUFIO_AGE_RECIPIENTS); required for s3:// unless --unencrypted', '<age1…>', true, 'r'),
      opt('recipients-file', 'Encrypt an .age backup to the keys in this file, one per line (repeatable; default: backup.age_recipients_file)', '<file>', true),
      opt('gzip', 'Compress what "-" writes to stdout (a file\'s name says it: .gz)'),
      opt('full', 'In a set: a full backup, not a differential'),
      opt('unencrypted', 'To s3:// without recipients, or into a set whose newest backup is encrypted: send this one unencrypted, on purpose (or backup.unencrypted = true)'),
      opt('prune', 'In a set: afterwards remove what [backup.retention] in blufio.toml does not keep'),
      opt('ping', 'Tell a monitor (healthchecks.io-style): GET <url> on success, <url>/fail on failure', '<url>'),
      QUIET, JSON_OUT, PROGRESS,
      opt('pages-per-step', 'Pages copied per step of SQLite\'s backup API (default: 100, or 1000 with no pause)', '<n>'),
      SLEEP,
      opt('retries', 'Most copy attempts while a live database keeps changing (default: 10)', '<n>'),
      TIMEOUT, WORK_DIR,
    ],
    examples: [
      'blufio backup /var/backups/blufio-$(date +%F).db',
      'blufio backup /var/backups/blufio-$(date +%F).db.gz',
      'blufio backup /mnt/offsite/blufio-$(date +%F).db.gz.age --recipient age1…',
      'blufio backup s3://my-bucket/blufio/blufio-$(date +%F).db.gz',
      'blufio backup /var/backups/blufio/ --prune   # a set: timestamped, differential',
      'blufio backup - | ssh backup-host "cat > blufio.db"',
    ],
  },
  {
    name: 'restore', arg: '<path>',
    summary: 'Replace the database with the backup at <path>, s3://BUCKET/KEY, or the newest in a set (--at: as of a time). The current database is kept as <db>.pre-restore.',
    options: [
      DB, CONFIG,
      opt('dry-run', 'Check the plan (the backup\'s header and key, the target, who has it open) and say what would be replaced, kept and moved; change nothing', undefined, false, 'n'),
      AT, SERIES, IDENTITY,
      opt('if-missing', 'Restore only when the database does not exist yet (a fresh container seeding itself); exit 0 either way'),
      opt('force', 'Restore while another process has the database open (its later writes then go to <db>.pre-restore)', undefined, false, 'f'),
      QUIET, JSON_OUT, PROGRESS, SLEEP, TIMEOUT, WORK_DIR,
    ],
    examples: ['blufio restore /var/backups/blufio-2026-11-24.db --dry-run', 'blufio restore /var/backups/blufio-2026-11-24.db', 'blufio restore /var/backups/blufio/ --at 2026-11-24T08:00Z'],
  },
  {
    name: 'verify', arg: '<path>',
    summary: 'Check a backup (or any database file) and report what it holds; exit 0 if it is sound.',
    options: [
      CONFIG, opt('quick', 'Run quick_check instead of the full integrity_check'), AT, SERIES, IDENTITY,
      opt('quiet', 'Print nothing; the exit code tells', undefined, false, 'q'), JSON_OUT,
      opt('timeout', 'Give up after this long (a download, decrypting, the check)', '<seconds>'),
      opt('work-dir', 'Where a .gz or .age is unpacked to be checked (default: $TMPDIR; env BLUFIO_WORK_DIR)', '<dir>'),
    ],
    examples: ['blufio verify /var/backups/blufio-2026-11-24.db.gz'],
  },
  {
    name: 'list', arg: '<set>',
    summary: 'List the backups of a set (a folder or an s3:// prefix), newest first, and which cannot be restored (and why).',
    options: [CONFIG, opt('identity', 'Read the headers of encrypted backups with this age key file too (repeatable; default: backup.age_identity_file, env BLUFIO_AGE_IDENTITY_FILE)', '<file>', true, 'i'), JSON_OUT],
    examples: ['blufio list /var/backups/blufio/'],
  },
  {
    name: 'check', arg: '<set>',
    summary: 'Check that every backup of a set can be restored: names, headers, every differential\'s base; with --read-data, rebuild and integrity_check them. Exit 0 only when all is sound.',
    options: [
      opt('read-data', 'Also rebuild every backup and run integrity_check on it (downloads everything)'),
      opt('read-data-subset', 'Rebuild and integrity_check a random share of the backups, e.g. 10%', '<n%>'),
      opt('identity', 'Decrypt encrypted backups with this age key file (repeatable; default: backup.age_identity_file, env BLUFIO_AGE_IDENTITY_FILE)', '<file>', true, 'i'),
      SERIES, QUIET, JSON_OUT, CONFIG,
      opt('work-dir', 'Where backups are rebuilt to be checked (default: $TMPDIR; env BLUFIO_WORK_DIR)', '<dir>'),
    ],
    examples: ['blufio check s3://my-bucket/blufio/', 'blufio check /var/backups/blufio/ --read-data-subset 10%'],
  },
  {
    name: 'prune', arg: '<set>',
    summary: 'Remove the backups of a set that no --keep-* rule keeps (restic\'s forget, in UTC).',
    options: [
      opt('keep-last', 'Keep the n newest', '<n>'),
      opt('keep-hourly', 'Keep the newest of each of the n most recent hours that have one', '<n>'),
      opt('keep-daily', 'Same, days', '<n>'), opt('keep-weekly', 'Same, ISO weeks', '<n>'),
      opt('keep-monthly', 'Same, months', '<n>'), opt('keep-yearly', 'Same, years', '<n>'),
      opt('dry-run', 'Say what would be removed; remove nothing', undefined, false, 'n'),
      QUIET, opt('json', 'Print one JSON object with what was kept (and why) and removed'), CONFIG,
    ],
    examples: ['blufio prune /var/backups/blufio/ --keep-daily 7 --keep-weekly 4 --keep-monthly 12'],
  },
  {
    name: 'replicate', arg: '<set>',
    summary: 'Ship every commit of the live database to a set (a folder or an s3:// prefix ending in /) within a second, until SIGTERM; restore --at then reaches any moment.',
    options: [
      DB, CONFIG,
      opt('interval', 'How often what was committed is shipped, in seconds (default: 1, or [replicate] interval in blufio.toml)', '<seconds>'),
      opt('retries', 'Most copy attempts of a new base while the database keeps changing (default: 10)', '<n>'),
      opt('new-base-every', 'Start a new chain on a new base (a differential when it pays) this often, in hours (default: 6): a restore to any time then fetches at most ~60 objects', '<hours>'),
      opt('lag-warn', 'Say so (a lag event, and <url>/fail for --ping) when a commit has waited this many seconds to be shipped (default: 10, or [replicate] lag_warn)', '<seconds>'),
      opt('max-backlog', 'While the set cannot be reached, keep at most this many MiB of unshipped commits here, then fold them into one state (default: 1024, or [replicate] max_backlog_mb)', '<MiB>'),
      opt('recipient', 'Encrypt to this age public key (repeatable; default: backup.age_recipients, env BLUFIO_AGE_RECIPIENTS); required for s3:// unless --unencrypted', '<age1…>', true, 'r'),
      opt('recipients-file', 'Encrypt to the keys in this file, one per line (repeatable; default: backup.age_recipients_file)', '<file>', true),
      opt('unencrypted', 'To s3:// without recipients: ship unencrypted, on purpose (or backup.unencrypted = true)'),
      opt('ping', 'Tell a monitor: GET <url> at most once a minute while shipping works, <url>/fail when it does not', '<url>'),
      opt('take-over', 'Take the set from the replicator that holds it (one per set and database; it stands down before its next segment): when its machine is gone for good'),
      QUIET, opt('json', 'Events as JSON lines on stderr'), WORK_DIR,
    ],
    examples: ['blufio replicate /var/backups/blufio/', 'blufio replicate s3://my-bucket/blufio/ --recipient age1…', 'blufio restore s3://my-bucket/blufio/ --at 2026-12-07T03:15:42.250Z'],
  },
  {
    name: 'keygen', arg: '[file]',
    summary: 'Make an age key for encrypted backups: writes the private key to [file] (or stdout), prints its public key.',
    options: [JSON_OUT, QUIET],
    examples: ['blufio keygen ~/blufio-backup-key.txt'],
  },
];
