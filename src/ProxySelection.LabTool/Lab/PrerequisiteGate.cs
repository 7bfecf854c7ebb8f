using ProxySelection.Lab;

namespace ProxySelection.LabTool.Lab;

/// <summary>What the gate asks of this machine; tests replace it (no root, no apt).</summary>
/// <param name="IsRoot">Whether this process runs as root.</param>
/// <param name="KernelHasMptcp">Whether the kernel has MPTCP (net.mptcp.enabled exists).</param>
/// <param name="SearchPath">The directories a tool is executed from (this process's PATH).</param>
/// <param name="Install">Installs Debian packages, apt's output to the writer; false when that failed.</param>
internal sealed record MachineProbe(Func<bool> IsRoot, Func<bool> KernelHasMptcp, Func<IReadOnlyList<string>> SearchPath,
    Func<IReadOnlyList<string>, TextWriter, bool> Install)
{
    public static MachineProbe ThisMachine { get; } = new(() => LabRun.IsRoot, () => Prerequisites.KernelHasMptcp, Prerequisites.SearchPath,
        (packages, log) => Prerequisites.Install(packages, log, TimeSpan.FromMinutes(10)));
}

/// <summary>
/// What demo, interop and bench check before they build anything: root, the kernel's MPTCP, and the tools they run
/// (each verb its own list), the missing ones installed with apt-get unless told not to. A missing tool is one line
/// naming it and its package and <see cref="ExitCodes.PrerequisitesMissing"/>, never a failure inside the run.
/// </summary>
internal sealed class PrerequisiteGate(string verb, IReadOnlyList<(string Tool, string Package)> tools, MachineProbe probe)
{
    /// <summary>Root and the kernel: null when both are there, else the exit code after saying what is wrong.</summary>
    public int? CheckMachine(TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(error);
        if (!probe.IsRoot())
        {
            error.WriteLine($"proxysel-lab {verb} needs root: it creates network namespaces, installs firewall rules inside them and");
            error.WriteLine("may install packages. Run it with sudo, e.g.:");
            error.WriteLine($"  sudo dotnet run --project src/ProxySelection.LabTool -c Release -- {verb}");
            return ExitCodes.NotRoot;
        }

        if (!probe.KernelHasMptcp())
        {
            error.WriteLine("This kernel has no Multipath TCP (/proc/sys/net/mptcp/enabled is missing): Linux 5.6 or later with CONFIG_MPTCP is needed.");
            return ExitCodes.PrerequisitesMissing;
        }

        return null;
    }

    /// <summary>
    /// The tools: true when all are there (after installing the missing ones when <paramref name="install"/>); else one
    /// line on <paramref name="error"/> naming what is missing.
    /// </summary>
    public bool EnsureTools(bool install, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        var missing = Prerequisites.MissingTools(tools, probe.SearchPath());
        if (missing.Count == 0)
        {
            output.WriteLine($"Prerequisites: all there ({string.Join(", ", tools.Select(t => t.Package).Distinct())})");
            return true;
        }

        var packages = missing.Select(t => t.Package).Distinct().ToList();
        if (!install)
        {
            error.WriteLine($"proxysel-lab {verb}: missing {Describe(missing)}; install with: apt-get install {string.Join(' ', packages)} (or run without --no-install)");
            return false;
        }

        output.WriteLine($"Installing missing prerequisites: {string.Join(", ", packages)} (apt-get update, then apt-get install)...");
        if (!probe.Install(packages, output))
        {
            error.WriteLine($"proxysel-lab {verb}: could not install {string.Join(", ", packages)} (for {Describe(missing)}); install them by hand (apt-get install {string.Join(' ', packages)}) and run it again.");
            return false;
        }

        var still = Prerequisites.MissingTools(tools, probe.SearchPath());
        if (still.Count > 0)
        {
            error.WriteLine($"proxysel-lab {verb}: still missing after apt-get: {Describe(still)}");
            return false;
        }

        output.WriteLine($"    installed {string.Join(", ", packages)}");
        if (packages.Contains("nginx-light"))
        {
            // Debian's nginx packages enable and start a web server on port 80 of this machine (under systemd). The lab
            // runs its own nginx inside a namespace and does not need it.
            output.WriteLine("    note: on a machine with systemd, Debian's nginx package also starts an nginx service on port 80. The lab");
            output.WriteLine("    does not use it (it runs its own nginx inside a namespace); to stop and disable it: systemctl disable --now nginx");
        }

        return true;
    }

    /// <summary>Root, kernel and tools: null when the verb can run, else its exit code.</summary>
    public int? Check(bool install, TextWriter output, TextWriter error) =>
        CheckMachine(error) ?? (EnsureTools(install, output, error) ? null : ExitCodes.PrerequisitesMissing);

    private static string Describe(IEnumerable<(string Tool, string Package)> missing) =>
        string.Join(", ", missing.Select(t => $"{t.Tool} (package {t.Package})"));
}
