/**
 * The command line's parser and help, from one table of commands and their options (cli/commands.ts).
 * Written here instead of using cac: errors name options as they were typed (cac reported a typo
 * `--dry-run` as `--dryRun`, and `--no-verify` as `--verify`), a value may start with "-"
 * (`--sleep-ms -5` is a bad value, not an unknown option `-5`), `--` ends the options, a lone "-"
 * and "" are arguments like any other, an option given twice is named, and `--version` or `--help`
 * work after any command. The closest real option is suggested for a typo.
 *
 * The rules: `--name value` or `--name=value` for an option that takes a value (the next argument
 * is its value even if it starts with "-", unless it starts with "--"); `--name` for a switch, and
 * `--no-name` where the table says the switch is on by default; a one-letter form where the table
 * gives one (`-q`, `-n`, `-c <file>`; switches combine: `-qf`; a value option ends the group and
 * takes the next argument); `-h`/`--help`, `-v`/`--version` anywhere; after `--` everything is an
 * argument.
 */
import { BlufioError } from './core/errors.ts';
import { nearest } from './typos.ts';

export interface OptionSpec {
  /** As typed, without the dashes: "sleep-ms", or "no-verify" for a switch that turns something off. */
  name: string;
  /** The value's placeholder ("<n>"); absent for a switch. */
  value?: string;
  /** May be given more than once (its values are collected in order). */
  repeatable?: boolean;
  help: string;
  /** A one-letter form, as operators type it from habit (restic, age, rsync): "q" for -q. */
  short?: string;
}

export interface CommandSpec {
  name: string;
  /** "<path>" (required) or "[file]" (optional): every command takes one argument at most. */
  arg: string;
  summary: string;
  options: OptionSpec[];
  examples?: string[];
}

export type Parsed =
  | { kind: 'help'; command?: CommandSpec }
  | { kind: 'version' }
  | { kind: 'run'; command: CommandSpec; arg: string | undefined; flags: Record<string, string | string[] | boolean> };

/** "sleep-ms" -> "sleepMs"; "no-verify" -> "verify" (set to false). */
const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function parseArgs(commands: CommandSpec[], argv: string[]): Parsed {
  const first = argv[0];
  if (first === undefined) throw new BlufioError('E_USAGE', 'no command given', 'run blufio --help to see the commands');
  if (first === '-h' || first === '--help') return { kind: 'help' };
  if (first === '-v' || first === '--version') return { kind: 'version' };
  if (first === 'help') {
    // `blufio help backup`, as git, restic, cargo and npm take it.
    if (argv[1] === undefined) return { kind: 'help' };
    const asked = commands.find((c) => c.name === argv[1]);
    if (asked) return { kind: 'help', command: asked };
    const near = closest(argv[1], commands.map((c) => c.name));
    throw new BlufioError('E_USAGE', `no command "${argv[1]}" to help with`, near ? `did you mean blufio help ${near}?` : 'blufio help lists the commands');
  }
  const command = commands.find((c) => c.name === first);
  if (!command && first.startsWith('-')) {
    throw new BlufioError('E_USAGE', `${first} before a command`, 'the command comes first: blufio <command> [options] (blufio --help lists the commands)');
  }
  if (!command) {
    const near = closest(first, commands.map((c) => c.name));
    throw new BlufioError('E_USAGE', `unknown command "${first}"`, near ? `did you mean blufio ${near}? blufio --help lists the commands` : 'run blufio --help to see the commands');
  }
  const flags: Record<string, string | string[] | boolean> = {};
  const args: string[] = [];
  // Help is asked for whatever else is wrong on the line (a typo is what one wants help with).
  const end = argv.indexOf('--') < 0 ? argv.length : argv.indexOf('--');
  if (argv.slice(1, end).some((a) => a === '-h' || a === '--help')) return { kind: 'help', command };
  let wantsHelp = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h' || a === '--help') {
      wantsHelp = true;
      continue;
    }
    if (a === '-v' || a === '--version') return { kind: 'version' };
    if (!a.startsWith('-') || a === '-') {
      args.push(a);
      continue;
    }
    const set = (spec: OptionSpec, typed: string, value: string | boolean) => {
      const key = camel(spec.name.replace(/^no-/, ''));
      if (spec.repeatable) {
        flags[key] = [...((flags[key] as string[] | undefined) ?? []), value as string];
      } else if (key in flags) {
        const long = `--${spec.name}`;
        const times = argv.slice(1).filter((x) => x === long || x.startsWith(`${long}=`) || (spec.short && /^-[a-zA-Z]+$/.test(x) && x.includes(spec.short))).length;
        throw new BlufioError('E_USAGE', `${typed} was given ${Math.max(2, times)} times`, `give ${typed} once`);
      } else {
        flags[key] = value;
      }
    };
    const takeValue = (typed: string, spec: OptionSpec): string => {
      if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) return argv[++i];
      throw new BlufioError('E_USAGE', `${typed} needs a value`, `give ${typed} ${spec.value}`);
    };
    if (!a.startsWith('--')) {
      // One-letter options: -q, -qf, -c <file> (the value option last in its group).
      const letters = a.slice(1);
      for (let k = 0; k < letters.length; k++) {
        const typed = `-${letters[k]}`;
        const spec = command.options.find((o) => o.short === letters[k]);
        if (!spec) throw unknownOption(typed, command, commands);
        if (spec.value === undefined) {
          set(spec, typed, !spec.name.startsWith('no-'));
          continue;
        }
        if (k < letters.length - 1) throw new BlufioError('E_USAGE', `${typed} takes a value, so it must come last in ${a}`, `write ${typed} ${spec.value} on its own`);
        set(spec, typed, takeValue(typed, spec));
      }
      continue;
    }
    const eq = a.indexOf('=');
    const typed = eq > 0 ? a.slice(0, eq) : a;
    const spec = command.options.find((o) => `--${o.name}` === typed);
    if (!spec) throw unknownOption(typed, command, commands);
    if (spec.value === undefined) {
      if (eq > 0) throw new BlufioError('E_USAGE', `${typed} takes no value`, `write ${typed} alone`);
      set(spec, typed, !spec.name.startsWith('no-'));
    } else {
      set(spec, typed, eq > 0 ? a.slice(eq + 1) : takeValue(typed, spec));
    }
  }
  if (wantsHelp) return { kind: 'help', command };
  const required = command.arg.startsWith('<');
  const what = command.arg.replace(/[<>[\]]/g, '');
  if (args.length === 0 && required) throw new BlufioError('E_USAGE', `blufio ${command.name} needs a ${what}`, `run blufio ${command.name} --help`);
  if (args.length > 1) {
    throw new BlufioError('E_USAGE', `unexpected argument "${args[1]}": blufio ${command.name} takes one ${what}`,
      'quote a name with spaces; put -- before a name that starts with "-"');
  }
  return { kind: 'run', command, arg: args[0], flags };
}

function unknownOption(typed: string, command: CommandSpec, commands: CommandSpec[]): BlufioError {
  const names = command.options.map((o) => `--${o.name}`);
  const elsewhere = commands.filter((c) => c !== command && c.options.some((o) => `--${o.name}` === typed)).map((c) => c.name);
  if (elsewhere.length > 0) {
    return new BlufioError('E_USAGE', `blufio ${command.name} has no option ${typed}`,
      `it is an option of blufio ${elsewhere.join(' and ')}; run blufio ${command.name} --help to see this command's`);
  }
  const near = closest(typed, names);
  return new BlufioError('E_USAGE', `unknown option ${typed}`, near ? `did you mean ${near}? run blufio ${command.name} --help for the others` : `run blufio ${command.name} --help`);
}

/** The candidate nearest to `typed`, if it is near enough to be a typo (or `typed` begins it). */
function closest(typed: string, candidates: string[]): string | undefined {
  const prefixOf = typed.length >= 4 ? candidates.filter((c) => c.startsWith(typed)) : [];
  if (prefixOf.length === 1) return prefixOf[0];
  return nearest(typed, candidates, Math.max(1, Math.min(3, Math.floor(typed.length / 3))));
}

/** `text` broken into lines of at most `width` columns, each after the first indented by `indent`. */
function wrap(text: string, width: number, indent: number): string {
  const words = text.split(' ');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width - indent) {
      lines.push(line);
      line = w;
    } else {
      line = line ? `${line} ${w}` : w;
    }
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

/** The help text: the list of commands, or one command's options and examples. */
export function helpText(commands: CommandSpec[], version: string, command?: CommandSpec, columns = 100): string {
  const width = Math.max(40, Math.min(columns, 120));
  const table = (rows: Array<[string, string]>) => {
    const left = Math.min(28, Math.max(...rows.map(([l]) => l.length)) + 2);
    return rows.map(([l, r]) => `  ${l.padEnd(left)}${wrap(r, width, left + 2)}`).join('\n');
  };
  if (!command) {
    return [
      `blufio ${version}: consistent backups of a live SQLite database, restore, verify`,
      '',
      'Usage: blufio <command> [options]',
      '',
      'Commands:',
      table(commands.map((c) => [`${c.name} ${c.arg}`, c.summary])),
      '',
      'Run blufio <command> --help (or blufio help <command>) for its options. -v, --version: the version.',
      '',
    ].join('\n');
  }
  const opts: Array<[string, string]> = command.options.map((o) => [`${o.short ? `-${o.short}, ` : ''}--${o.name}${o.value ? ` ${o.value}` : ''}`, o.help]);
  opts.push(['-h, --help', 'Show this help']);
  return [
    `Usage: blufio ${command.name} ${command.arg} [options]`,
    '',
    wrap(command.summary, width, 0),
    '',
    'Options:',
    table(opts),
    ...(command.examples?.length ? ['', 'Examples:', ...command.examples.map((e) => `  ${e}`)] : []),
    '',
  ].join('\n');
}
