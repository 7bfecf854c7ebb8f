using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// The two-path lab (client — proxy — server) with real tools: <c>proxysel run</c> as its own process in the proxy
/// namespace, nginx (TCP, or MPTCP under mptcpize) in the server namespace serving a generated file from a temp dir,
/// curl (plain or under mptcpize) in the client namespace. Everything is removed on dispose, whatever happened.
/// </summary>
internal sealed partial class ProxyLab : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private ProxyLab(ProxySelection.Lab.Lab lab, TwoPathTopology topology, string directory)
    {
        Lab = lab;
        Topology = topology;
        Directory = directory;
    }

    public ProxySelection.Lab.Lab Lab { get; }

    public TwoPathTopology Topology { get; }

    /// <summary>This lab's temp directory (nginx prefix, served files, downloads, captures).</summary>
    public string Directory { get; }

    public static string ProxyselDll => Path.Combine(AppContext.BaseDirectory, "proxysel.dll");

    public static async Task<ProxyLab> StartAsync()
    {
        var lab = ProxySelection.Lab.Lab.Create();
        try
        {
            var topology = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
            // Checksum offload off at the hosts: a capture then shows the checksum the wire carries, not the partial
            // one veth leaves for offload (which the NFQUEUE path completes, so only a queued SYN would differ).
            foreach (var (ns, device) in new[]
            {
                (topology.Client, TwoPathTopology.ClientPath1), (topology.Client, TwoPathTopology.ClientPath2), (topology.Server, TwoPathTopology.ServerDown),
            })
            {
                await ns.CheckAsync("ethtool", ["-K", device, "tx", "off"], Timeout);
            }

            var directory = System.IO.Directory.CreateTempSubdirectory("psel-proxy-").FullName;
            return new ProxyLab(lab, topology, directory);
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// The daemon's kernel paths off (<c>Proxy:KernelFastPath</c>, <c>Proxy:KernelSigning</c>, <c>Proxy:KernelJoins</c>, on by default): every MPTCP
    /// SYN is decided by the engine and every signal signed through the egress queue, so the per-SYN events and counters
    /// these tests read exist for cache hits too. The kernel paths have tests of their own (KernelSigningTests,
    /// FastPathCacheTests, FastPathLatencyTests), and the interop runner and the demo run the daemon's defaults.
    /// </summary>
    public static readonly string[] QueuePath = ["--set", "Proxy:KernelFastPath=false", "--set", "Proxy:KernelSigning=false", "--set", "Proxy:KernelJoins=false"];

    /// <summary>The daemon's own defaults again (kernel fast path, kernel signing and kernel joins on), overriding <see cref="QueuePath"/>.</summary>
    public static readonly string[] KernelPath = ["--set", "Proxy:KernelFastPath=true", "--set", "Proxy:KernelSigning=true", "--set", "Proxy:KernelJoins=true"];

    /// <summary>Starts <c>dotnet proxysel.dll run</c> in the proxy namespace and waits until its rules are in.</summary>
    public Task<LabProcess> StartProxyAsync(params string[] extra) => StartProxyInAsync(Topology.Proxy, extra);

    /// <summary>Starts <c>dotnet proxysel.dll run</c> in <paramref name="ns"/> and waits until its rules are in.</summary>
    public static async Task<LabProcess> StartProxyInAsync(NetNamespace ns, params string[] extra)
    {
        var process = StartProxysel(ns, ["--ports", "80", .. extra]);
        try
        {
            await process.WaitForOutputAsync("proxysel: running", Timeout);
        }
        catch
        {
            TestContext.Progress.WriteLine(process.Output);
            throw;
        }

        return process;
    }

    /// <summary>Runs <c>proxysel cleanup</c> in the proxy namespace.</summary>
    public Task<CommandResult> CleanupAsync() => Topology.Proxy.RunAsync("dotnet", [ProxyselDll, "cleanup"], Timeout);

    /// <summary>Writes <paramref name="bytes"/> of seeded random data as <c>www/name</c>; returns its SHA-256 (hex).</summary>
    public string WriteFile(string name, int bytes)
    {
        var www = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "www")).FullName;
        var data = new byte[bytes];
        new Random(bytes).NextBytes(data);
        File.WriteAllBytes(Path.Combine(www, name), data);
        return Convert.ToHexStringLower(SHA256.HashData(data));
    }

    /// <summary>
    /// The nginx path prefix that serves the same files at <see cref="PacedBytesPerSecond"/> (nginx sends the first
    /// second's worth at once, the rest paced): a download that must outlast its client's join. curl's --limit-rate does not
    /// do it here: curl 7.88 read 1-8 MiB at a 2-4 MB/s limit in 40-300 ms.
    /// </summary>
    public const string Paced = "paced/";

    public const int PacedBytesPerSecond = 512 * 1024;

    /// <summary>nginx on port 80 (v4 and v6) in the server namespace, with its own config, pid and temp paths; MPTCP under mptcpize.</summary>
    public Task<LabProcess> StartNginxAsync(bool mptcp = false) =>
        StartNginxInAsync(Topology.Server, [TwoPathTopology.ServerV4, $"[{TwoPathTopology.ServerV6}]"], mptcp);

    /// <summary>nginx on port 80 of <paramref name="addresses"/> in <paramref name="ns"/>.</summary>
    public async Task<LabProcess> StartNginxInAsync(NetNamespace ns, IReadOnlyList<string> addresses, bool mptcp = false)
    {
        var prefix = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "nginx")).FullName;
        var www = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "www")).FullName;
        var conf = Path.Combine(prefix, "nginx.conf");
        await File.WriteAllTextAsync(conf, $$"""
            daemon off;
            user root;
            worker_processes 1;
            pid {{prefix}}/nginx.pid;
            error_log stderr warn;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path {{prefix}}/body;
                proxy_temp_path {{prefix}}/proxy;
                fastcgi_temp_path {{prefix}}/fastcgi;
                uwsgi_temp_path {{prefix}}/uwsgi;
                scgi_temp_path {{prefix}}/scgi;
                sendfile on;
                server {
                    {{string.Concat(addresses.Select(a => $"listen {a}:80; "))}}
                    root {{www}};
                    location /{{Paced}} { alias {{www}}/; limit_rate {{PacedBytesPerSecond}}; }
                }
            }
            """);
        string[] nginx = ["nginx", "-p", prefix, "-c", conf];
        var process = mptcp
            ? ns.StartProcess("mptcpize", ["run", .. nginx])
            : ns.StartProcess(nginx[0], nginx[1..]);
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var listening = await ns.CheckAsync("ss", ["-Hltn", "sport = :80"], Timeout);
            if (listening.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length >= addresses.Count)
            {
                return process;
            }

            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"nginx did not start: {process.Output}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>
    /// curl in the client namespace (under mptcpize when <paramref name="mptcp"/>), saving to <paramref name="output"/>.
    /// </summary>
    public Task<CommandResult> CurlAsync(string url, bool mptcp, string output, TimeSpan? timeout = null, params string[] extra)
    {
        var limit = timeout ?? Timeout;
        string[] curl = ["curl", "-sS", "-g", "-o", output, "-w", "%{http_code} %{size_download} %{time_total}", "--max-time",
            limit.TotalSeconds.ToString("F0", CultureInfo.InvariantCulture), .. extra, url];
        return mptcp
            ? Topology.Client.RunAsync("mptcpize", ["run", .. curl], limit + TimeSpan.FromSeconds(5))
            : Topology.Client.RunAsync(curl[0], curl[1..], limit + TimeSpan.FromSeconds(5));
    }

    public static string Url(bool v6, string path) => v6 ? $"http://[{TwoPathTopology.ServerV6}]/{path}" : $"http://{TwoPathTopology.ServerV4}/{path}";

    public static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>
    /// The proxysel build beside the tests (its dll, dependencies and runtime config), copied into
    /// <paramref name="directory"/>, world-readable (a process of another user can run it wherever the clone is); returns
    /// its proxysel.dll.
    /// </summary>
    public static string CopyDaemon(string directory)
    {
        const UnixFileMode Readable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        System.IO.Directory.CreateDirectory(directory);
        Assert.That(OperatingSystem.IsLinux(), Is.True, "the lab runs on Linux");
        if (OperatingSystem.IsLinux())
        {
            File.SetUnixFileMode(directory, Readable | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        }

        foreach (var file in System.IO.Directory.EnumerateFiles(AppContext.BaseDirectory))
        {
            var name = Path.GetFileName(file);
            // Assemblies, and the daemon's and the lab tool's runtime configuration and dependency lists.
            if (name.EndsWith(".dll", StringComparison.Ordinal) || name.StartsWith("proxysel", StringComparison.Ordinal))
            {
                var copy = Path.Combine(directory, name);
                File.Copy(file, copy);
                if (OperatingSystem.IsLinux())
                {
                    File.SetUnixFileMode(copy, Readable);
                }
            }
        }

        var dll = Path.Combine(directory, Path.GetFileName(ProxyselDll));
        Assert.That(File.Exists(dll), Is.True);
        return dll;
    }

    /// <summary>
    /// Starts <c>dotnet proxysel.dll run</c> with <paramref name="args"/> in <paramref name="ns"/>, its decisions going to an
    /// event file of its own (<c>--events</c>, in a temp dir) that <see cref="Events"/> and <see cref="Lines"/> read. On the
    /// queue path (<see cref="QueuePath"/>) unless <paramref name="args"/> set the kernel keys again (the last --set wins).
    /// </summary>
    public static LabProcess StartProxysel(NetNamespace ns, params string[] args)
    {
        var file = Path.Combine(System.IO.Directory.CreateTempSubdirectory("psel-events-").FullName, "events.jsonl");
        var process = ns.StartProcess("dotnet", [ProxyselDll, "run", "--events", file, .. QueuePath, .. args]);
        EventFiles.AddOrUpdate(process, file);
        return process;
    }

    private static readonly ConditionalWeakTable<LabProcess, string> EventFiles = [];

    /// <summary>The engine's events of a proxy started by <see cref="StartProxysel"/> (none for another process).</summary>
    public static IReadOnlyList<ProxyEvent> Events(LabProcess process, string? name = null) =>
        EventFiles.TryGetValue(process, out var file)
            ? [.. ProxyEvents.ReadFile(file).Where(e => name is null || e.Event == name)]
            : [];

    /// <summary>
    /// The proxy's decisions whose text starts with <paramref name="prefix"/> (<c>syn </c>, <c>relay </c>, ...), one line per
    /// event (<see cref="ProxyEventText"/>); other prefixes match the process's own output lines (start and stop lines).
    /// </summary>
    public static IReadOnlyList<string> Lines(LabProcess process, string prefix)
    {
        var events = Events(process).Where(e => e.Event != "stopped").Select(ProxyEventText.Format).Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        return events.Count > 0 || EventFiles.TryGetValue(process, out _) && EventPrefixes.Any(p => prefix.StartsWith(p, StringComparison.Ordinal))
            ? events
            : [.. process.Output.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith(prefix, StringComparison.Ordinal))];
    }

    private static readonly string[] EventPrefixes = ["syn ", "probe ", "hold ", "join ", "accepted ", "expired ", "relay "];

    /// <summary>The counter <paramref name="name"/> of the proxy's <c>stopped</c> event (after it stopped).</summary>
    public static long Counter(LabProcess process, string name)
    {
        var stopped = Events(process, "stopped").LastOrDefault()?.Counters;
        if (stopped is not null && stopped.TryGetValue(name, out long value))
        {
            return value;
        }

        // Counters the stop line names differently (max_hold_ms; the event carries max_hold_us).

        var line = Lines(process, "proxysel: stopped").LastOrDefault()
            ?? throw new InvalidOperationException($"no counters line in: {process.Output}");
        var match = Regex.Match(line, $@"\b{Regex.Escape(name)}=([0-9.]+)");
        return match.Success
            ? (long)double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture)
            : throw new InvalidOperationException($"no counter {name} in: {line}");
    }

    /// <summary>Waits until a proxy output line starting with <paramref name="prefix"/> and containing <paramref name="text"/> appears.</summary>
    public static async Task<string> WaitForLineAsync(LabProcess process, string prefix, string text)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline)
        {
            var line = Lines(process, prefix).FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"no '{prefix}...{text}' line in: {string.Join('\n', Events(process).Select(ProxyEventText.Format))}\n{process.Output}");
    }

    public async ValueTask DisposeAsync()
    {
        await Lab.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
