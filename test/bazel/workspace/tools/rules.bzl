"""Rules that exercise what remote execution must get right beyond genrules."""

def _tree_impl(ctx):
    # A tree artifact: a directory output whose files Bazel learns only after the action ran.
    out = ctx.actions.declare_directory(ctx.attr.name)
    ctx.actions.run_shell(
        inputs = ctx.files.srcs,
        outputs = [out],
        command = " && ".join([
            "mkdir -p {out}/nested/deeper",
            "cp {srcs} {out}/",
            "echo nested > {out}/nested/deeper/file.txt",
            "printf '#!/bin/sh\\necho tool\\n' > {out}/nested/run.sh",
            "chmod +x {out}/nested/run.sh",
        ]).format(out = out.path, srcs = " ".join([f.path for f in ctx.files.srcs])),
        mnemonic = "MakeTree",
    )
    return [DefaultInfo(files = depset([out]))]

tree = rule(
    implementation = _tree_impl,
    attrs = {"srcs": attr.label_list(allow_files = True)},
)

def _upper_impl(ctx):
    # The JSON worker's action. With --strategy=UpperJson=worker Bazel keeps the tool running; with remote
    # execution (and no remote persistent workers) it is a one-shot command reading its @flagfile.
    outs = []
    args = ctx.actions.args()
    args.set_param_file_format("multiline")
    args.use_param_file("@%s", use_always = True)
    for src in ctx.files.srcs:
        out = ctx.actions.declare_file(ctx.attr.name + "/" + src.basename.upper())
        outs.append(out)
        args.add(src.path)
        args.add(out.path)
    startup = ctx.actions.args()
    if ctx.attr.startup_delay_ms:
        startup.add("--startup-delay-ms=%d" % ctx.attr.startup_delay_ms)
    ctx.actions.run(
        executable = ctx.executable._worker,
        arguments = [startup, args],
        inputs = ctx.files.srcs,
        outputs = outs,
        mnemonic = "UpperJson",
        execution_requirements = {"supports-workers": "1", "requires-worker-protocol": "json"},
    )
    return [DefaultInfo(files = depset(outs))]

upper = rule(
    implementation = _upper_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = True),
        # Start-up arguments (before the flag file): a slow-starting tool, for persistent-worker tests.
        "startup_delay_ms": attr.int(default = 0),
        "_worker": attr.label(
            default = "//tools:upper_worker.js",
            executable = True,
            allow_single_file = True,
            cfg = "exec",
        ),
    },
)
