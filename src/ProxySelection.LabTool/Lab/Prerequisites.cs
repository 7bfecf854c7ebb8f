using System.Diagnostics;

namespace ProxySelection.LabTool.Lab;

/// <summary>The Debian packages the demo runs, found by the tools it calls; missing ones installed with apt-get.</summary>
internal static class Prerequisites
{
    /// <summary>Each tool the demo (or the Lab library under it) runs, and the Debian package that ships it.</summary>
    public static readonly IReadOnlyList<(string Tool, string Package)> Tools =
    [
        ("ip", "iproute2"),        // namespaces, veths, addresses, routes, MPTCP endpoints
        ("tc", "iproute2"),        // HTB rate limits
        ("ss", "iproute2"),        // the client's subflows
        ("iptables", "iptables"),  // the proxies' NFQUEUE and TPROXY rules
        ("tcpdump", "tcpdump"),    // captures on both sides of the pass-through proxy
        ("mptcpize", "mptcpize"),  // curl with MPTCP sockets
        ("nginx", "nginx-light"),  // the TCP-only web server
        ("curl", "curl"),          // the download
        ("iperf3", "iperf3"),      // hybrid access: one path against both, in steady state
        ("ethtool", "ethtool"),    // checksum offload off where captures compare segments
        ("setsid", "util-linux"),  // long-running lab processes in their own process group
    ];

    private static readonly string[] SystemDirectories = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

    /// <summary>The packages whose tool is in none of <paramref name="searchPath"/>'s directories (in order, no repeats).</summary>
    public static IReadOnlyList<string> Missing(IEnumerable<string> searchPath)
    {
        var directories = searchPath.ToList();
        return [.. Tools.Where(t => !directories.Any(d => File.Exists(Path.Combine(d, t.Tool)))).Select(t => t.Package).Distinct()];
    }

    /// <summary>PATH plus the system directories (sudo may hand over a PATH without the sbin ones).</summary>
    public static IReadOnlyList<string> SearchPath() =>
        [.. (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(SystemDirectories).Distinct()];

    /// <summary>The kernel must have MPTCP (Linux 5.6+, CONFIG_MPTCP) for the demo to mean anything.</summary>
    public static bool KernelHasMptcp => File.Exists("/proc/sys/net/mptcp/enabled");

    /// <summary>
    /// <c>apt-get update</c>, then <c>apt-get install</c> of <paramref name="packages"/>, non-interactive; apt's output
    /// goes to <paramref name="log"/> indented. Returns false (with apt's exit code said) when the install fails; a failed
    /// update is said and the install tried all the same.
    /// </summary>
    public static bool Install(IReadOnlyList<string> packages, TextWriter log, TimeSpan timeout, string aptGet = "apt-get",
        string aptCache = "apt-cache")
    {
        // One unreachable third-party repository fails the whole update, while Debian's own lists may be fine: try the
        // install anyway; it fails by itself when the packages cannot be found.
        if (!RunApt(aptGet, ["update", .. WaitForLock], log, timeout))
        {
            log.WriteLine("  trying the install with the package lists this machine has");
        }

        var names = packages.Select(p => Alternatives.TryGetValue(p, out var other) && !HasCandidate(aptCache, p) ? other : p).ToList();
        return RunApt(aptGet, ["install", "-y", "--no-install-recommends", .. WaitForLock, .. KeepConfigFiles, .. names], log, timeout);
    }

    /// <summary>
    /// Another apt (unattended-upgrades on a fresh machine, often) holds the lock: wait for it rather than fail at once.
    /// </summary>
    private static readonly string[] WaitForLock = ["-o", "DPkg::Lock::Timeout=120"];

    /// <summary>
    /// Config files left by an earlier install that was removed (not purged): keep them without asking. The
    /// noninteractive frontend silences debconf only; dpkg would still ask about them.
    /// </summary>
    private static readonly string[] KeepConfigFiles = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"];

    /// <summary>Where a release lacks a package: newer Debian and Ubuntu ship one nginx, older ones mptcpize inside mptcpd.</summary>
    private static readonly Dictionary<string, string> Alternatives = new(StringComparer.Ordinal)
    {
        ["nginx-light"] = "nginx",
        ["mptcpize"] = "mptcpd",
    };

    private static bool HasCandidate(string aptCache, string package)
    {
        var start = new ProcessStartInfo(aptCache, ["policy", package]) { RedirectStandardOutput = true };
        try
        {
            using var process = Process.Start(start);
            if (process is null)
            {
                return true;
            }

            var text = process.StandardOutput.ReadToEnd();
            process.WaitForExit(10_000);
            // "Candidate: (none)" or no entry at all: the package is not available here.
            return text.Contains("Candidate:", StringComparison.Ordinal) && !text.Contains("Candidate: (none)", StringComparison.Ordinal);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return true;
        }
    }

    private static bool RunApt(string aptGet, string[] args, TextWriter log, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(aptGet, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("apt-get did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            log.WriteLine($"  apt-get could not be started ({e.Message}): install the packages by hand.");
            return false;
        }

        using (process)
        {
            var gate = new Lock();
            void Forward(object sender, DataReceivedEventArgs e)
            {
                // dpkg redraws "(Reading database ... 45%" with carriage returns, which arrive as twenty lines.
                if (e.Data is { Length: > 0 } line && !line.StartsWith("(Reading database ... ", StringComparison.Ordinal))
                {
                    lock (gate)
                    {
                        log.WriteLine($"  | {line}");
                    }
                }
            }

            process.OutputDataReceived += Forward;
            process.ErrorDataReceived += Forward;
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                log.WriteLine($"  apt-get {args[0]} did not finish within {timeout.TotalSeconds:F0} s");
                return false;
            }

            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                log.WriteLine($"  apt-get {args[0]} failed (exit code {process.ExitCode})");
                return false;
            }

            return true;
        }
    }
}
