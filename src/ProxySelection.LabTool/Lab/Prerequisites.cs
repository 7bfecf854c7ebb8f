using System.Diagnostics;

namespace ProxySelection.LabTool.Lab;

/// <summary>
/// The Debian packages demo, interop and bench run, found by the tools they call; missing ones installed with apt-get
/// (<see cref="PrerequisiteGate"/>).
/// </summary>
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

    /// <summary>What <c>interop</c> runs: chains of proxies with captures on every hop, nginx and curl.</summary>
    public static readonly IReadOnlyList<(string Tool, string Package)> InteropTools =
    [
        ("ip", "iproute2"),
        ("tc", "iproute2"),        // client path rates, netem delay for --compare
        ("iptables", "iptables"),
        ("tcpdump", "tcpdump"),
        ("mptcpize", "mptcpize"),
        ("nginx", "nginx-light"),
        ("curl", "curl"),
        ("ethtool", "ethtool"),
        ("sysctl", "procps"),      // per-namespace MPTCP and forwarding settings
        ("setsid", "util-linux"),
    ];

    /// <summary>What the tier cells of <c>interop</c> run beside <see cref="InteropTools"/>: BIRD, for the ECMP router's BGP.</summary>
    public static readonly IReadOnlyList<(string Tool, string Package)> TierTools =
    [
        ("bird", "bird2"),         // the router's and every instance's BGP daemon
        ("birdc", "bird2"),        // an instance announces and withdraws the service route through it
    ];

    /// <summary>What <c>bench</c> runs: the relays compared (HAProxy, socat), the load generators and the tracer.</summary>
    public static readonly IReadOnlyList<(string Tool, string Package)> BenchTools =
    [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("nstat", "iproute2"),     // retransmissions per run
        ("iptables", "iptables"),  // the engine subject's rules
        ("iperf3", "iperf3"),
        ("wrk", "wrk"),
        ("nginx", "nginx-light"),  // wrk's server
        ("haproxy", "haproxy"),
        ("socat", "socat"),
        ("mptcpize", "mptcpize"),
        ("strace", "strace"),      // --diagnose
        ("sysctl", "procps"),
        ("setsid", "util-linux"),
    ];

    private static readonly string[] SystemDirectories = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

    /// <summary>The demo's packages whose tool is in none of <paramref name="searchPath"/>'s directories (in order, no repeats).</summary>
    public static IReadOnlyList<string> Missing(IEnumerable<string> searchPath) =>
        [.. MissingTools(Tools, searchPath).Select(t => t.Package).Distinct()];

    /// <summary>The <paramref name="tools"/> in none of <paramref name="searchPath"/>'s directories, in order.</summary>
    public static IReadOnlyList<(string Tool, string Package)> MissingTools(IReadOnlyList<(string Tool, string Package)> tools, IEnumerable<string> searchPath)
    {
        ArgumentNullException.ThrowIfNull(tools);
        var directories = searchPath.ToList();
        return [.. tools.Where(t => !directories.Any(d => File.Exists(Path.Combine(d, t.Tool))))];
    }

    /// <summary>This process's PATH: where the tools are executed from, by us and by <c>ip netns exec</c>.</summary>
    public static IReadOnlyList<string> SearchPath() =>
        [.. (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Distinct()];

    /// <summary>
    /// Adds the system directories missing from this process's PATH (sudo may hand over one without the sbin ones), so
    /// that the tools found by <see cref="SearchPath"/> are the ones executed.
    /// </summary>
    public static void CompletePath()
    {
        var path = SearchPath();
        Environment.SetEnvironmentVariable("PATH", string.Join(':', path.Concat(SystemDirectories.Except(path))));
    }

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
