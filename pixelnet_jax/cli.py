"""What every launcher shares: one absl mechanism for flags, help, aliases and Ctrl-C.

``run(main, usage, flag_names)`` runs a launcher's ``main`` with absl: ``--help`` lists
the launcher's flags, ``--flag-name`` is accepted for ``--flag_name``, and a Ctrl-C
outside the training loop's own handler exits without a traceback.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS


def hyphen_aliases(argv: list[str], flag_values=FLAGS) -> list[str]:
  """``--out-dir[=v]`` -> ``--out_dir[=v]`` (also ``--no-``) for every defined flag.

  absl flag names cannot contain hyphens, so every launcher accepts the hyphenated
  spelling of its flags by rewriting argv before absl parses it (up to a bare ``--``).
  """
  result = list(argv[:1])
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      return result + list(argv[i:])
    name, eq, value = arg[2:].partition("=")
    if arg.startswith("--") and "-" in name:
      fixed = name.replace("-", "_")
      if fixed in flag_values:
        arg = f"--{fixed}{eq}{value}"
      elif fixed.startswith("no_") and fixed[3:] in flag_values:  # --no-flag-name
        arg = f"--no{fixed[3:]}{eq}{value}"
    result.append(arg)
  return result


def run(main, usage: str, flag_names: list[str]):
  """Runs ``main`` with absl, the same way for every launcher.

  ``--help`` lists the key flags of the main module, which for an installed console
  script is the generated wrapper, not this module: declare ours (and ``verbosity``) as
  its key flags, and give it a usage line.
  """
  main_module = sys.modules.get("__main__")
  if main_module is not None and not main_module.__doc__:
    main_module.__doc__ = usage
  for name in [*flag_names, "verbosity"]:
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])

  def guarded(argv):
    try:
      main(argv)
    except KeyboardInterrupt:
      # Ctrl-C outside the training loop's own handler (setup, final waits): no traceback.
      print("\ninterrupted.", file=sys.stderr, flush=True)
      sys.stdout.flush()
      os._exit(130)

  argv = hyphen_aliases(sys.argv)
  try:
    app.run(guarded, argv=argv)
  except SystemExit as e:
    # absl exits with status 1 after printing --help; asking for help is not a failure.
    asked = {"-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml"} & set(argv[1:])
    if asked and e.code == 1:
      sys.exit(0)
    raise
