using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;

namespace ProxySelection.Lab;

/// <summary>nginx serving a directory inside a namespace (foreground master, own process group, files under one
/// temporary directory that <see cref="DisposeAsync"/> removes).</summary>
public sealed class NginxServer : IAsyncDisposable
{
    private readonly LabProcess process;

    private NginxServer(LabProcess process, string directory, int port)
    {
        this.process = process;
        Directory = directory;
        Port = port;
    }

    /// <summary>The instance directory: config, logs, temp paths; <see cref="WebRoot"/> inside it.</summary>
    public string Directory { get; }

    /// <summary>Files put here are served at <c>http://addr:Port/name</c>.</summary>
    public string WebRoot => Path.Combine(Directory, "www");

    public int Port { get; }

    public string ErrorLog => File.Exists(Path.Combine(Directory, "error.log")) ? File.ReadAllText(Path.Combine(Directory, "error.log")) : "";

    /// <summary>Starts nginx on <paramref name="port"/> (IPv4 and IPv6, any address) in <paramref name="ns"/> and waits
    /// until <paramref name="probeAddress"/>:port accepts connections. <paramref name="serverDirectives"/> go into the
    /// server block as they are (e.g. a location with its own <c>limit_rate</c>).</summary>
    public static async Task<NginxServer> StartAsync(NetNamespace ns, int port, IPAddress probeAddress, bool mptcp = false,
        TimeSpan? readyTimeout = null, string serverDirectives = "")
    {
        ArgumentNullException.ThrowIfNull(ns);
        var dir = System.IO.Directory.CreateTempSubdirectory($"{ns.Name}-nginx-").FullName;
        System.IO.Directory.CreateDirectory(Path.Combine(dir, "www"));
        var p = port.ToString(CultureInfo.InvariantCulture);
        // user root: the temporary directory is 0700, so workers running as www-data could not read it.
        var config = $$"""
            user root;
            worker_processes 1;
            daemon off;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log warn;
            events { worker_connections 512; }
            http {
                access_log off;
                sendfile on;
                client_body_temp_path {{dir}}/body;
                proxy_temp_path {{dir}}/proxy;
                fastcgi_temp_path {{dir}}/fastcgi;
                uwsgi_temp_path {{dir}}/uwsgi;
                scgi_temp_path {{dir}}/scgi;
                server {
                    listen {{p}};
                    listen [::]:{{p}};
                    root {{dir}}/www;
                    {{serverDirectives}}
                }
            }
            """;
        var conf = Path.Combine(dir, "nginx.conf");
        await File.WriteAllTextAsync(conf, config).ConfigureAwait(false);
        List<string> args = ["nginx", "-c", conf, "-p", dir, "-e", Path.Combine(dir, "error.log")];
        var process = mptcp ? ns.StartProcess("mptcpize", ["run", .. args]) : ns.StartProcess(args[0], args.Skip(1));
        var server = new NginxServer(process, dir, port);
        try
        {
            await LabNetwork.WaitForTcpListenerAsync(ns, new IPEndPoint(probeAddress, port), readyTimeout ?? TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (LabException e)
        {
            var log = server.ErrorLog;
            await server.DisposeAsync().ConfigureAwait(false);
            throw new LabException($"nginx did not start: {e.Message} {log}", e);
        }

        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await process.DisposeAsync().ConfigureAwait(false);
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a file still open by a dying worker.
        }
    }
}

/// <summary>What curl reported.</summary>
public sealed record CurlResult(int HttpStatus, long BytesDownloaded, int ExitCode, string StdErr);

/// <summary>What an iperf3 client run measured (received side).</summary>
public sealed record Iperf3Result(double BitsPerSecond, long Bytes, double Seconds);

/// <summary>Real clients and servers run inside namespaces, optionally under <c>mptcpize run</c>.</summary>
public static class LabNetwork
{
    /// <summary>Connects repeatedly from inside <paramref name="ns"/> until <paramref name="endpoint"/> accepts (bounded).</summary>
    public static async Task WaitForTcpListenerAsync(NetNamespace ns, IPEndPoint endpoint, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(endpoint);
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            using var socket = await ns.RunInNamespaceAsync(() => new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp)).ConfigureAwait(false);
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
                attempt.CancelAfter(TimeSpan.FromSeconds(1));
                await socket.ConnectAsync(endpoint, attempt.Token).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                if (cts.IsCancellationRequested)
                {
                    throw new LabException($"nothing accepted on {endpoint} in {ns.Name} within {timeout}");
                }
            }

            await Task.Delay(50, CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// <c>curl</c> from <paramref name="ns"/> (under <c>mptcpize run</c> when <paramref name="mptcp"/>), body written to
    /// <paramref name="outputPath"/>. IPv6 literals are fine (<c>-g</c>).
    /// </summary>
    public static async Task<CurlResult> CurlAsync(NetNamespace ns, string url, string outputPath, bool mptcp, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(ns);
        var seconds = Math.Max(1, (int)timeout.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        List<string> curl = ["curl", "-sS", "-g", "--max-time", seconds, "-o", outputPath, "-w", "%{http_code} %{size_download}", url];
        var r = mptcp
            ? await ns.RunAsync("mptcpize", ["run", .. curl], timeout + TimeSpan.FromSeconds(5)).ConfigureAwait(false)
            : await ns.RunAsync(curl[0], curl.Skip(1), timeout + TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        var parts = r.StdOut.Trim().Split(' ');
        var status = parts.Length == 2 && int.TryParse(parts[0], CultureInfo.InvariantCulture, out var s) ? s : 0;
        var bytes = parts.Length == 2 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var b) ? b : 0;
        return new CurlResult(status, bytes, r.ExitCode, r.StdErr);
    }

    /// <summary>Starts a one-shot iperf3 server (<c>-s -1</c>) in <paramref name="ns"/> on <paramref name="port"/>,
    /// under mptcpize when asked; returns once it listens.</summary>
    public static async Task<LabProcess> StartIperf3ServerAsync(NetNamespace ns, int port, bool mptcp = false)
    {
        ArgumentNullException.ThrowIfNull(ns);
        // --forceflush: stdout is a pipe, and the readiness line would otherwise sit in its buffer.
        List<string> args = ["iperf3", "-s", "-1", "--forceflush", "-p", port.ToString(CultureInfo.InvariantCulture)];
        var p = mptcp ? ns.StartProcess("mptcpize", ["run", .. args]) : ns.StartProcess(args[0], args.Skip(1));
        await p.WaitForOutputAsync("Server listening", TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        return p;
    }

    /// <summary>
    /// Runs an iperf3 client for <paramref name="seconds"/> (bounded) and reads the received rate from its JSON. With
    /// <paramref name="omitSeconds"/>, iperf3 first runs that long uncounted (<c>-O</c>: slow start and set-up left out).
    /// </summary>
    public static async Task<Iperf3Result> Iperf3Async(NetNamespace ns, IPAddress server, int port, int seconds, bool mptcp = false, bool reverse = false,
        int omitSeconds = 0)
    {
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(server);
        ArgumentOutOfRangeException.ThrowIfLessThan(seconds, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(seconds, 60);
        ArgumentOutOfRangeException.ThrowIfNegative(omitSeconds);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(omitSeconds, 10);
        List<string> args = ["iperf3", "-c", server.ToString(), "-p", port.ToString(CultureInfo.InvariantCulture), "-t",
            seconds.ToString(CultureInfo.InvariantCulture), "-O", omitSeconds.ToString(CultureInfo.InvariantCulture), "-J"];
        if (reverse)
        {
            args.Add("-R");
        }

        var timeout = TimeSpan.FromSeconds(seconds + omitSeconds + 15);
        var r = mptcp
            ? await ns.RunAsync("mptcpize", ["run", .. args], timeout).ConfigureAwait(false)
            : await ns.RunAsync(args[0], args.Skip(1), timeout).ConfigureAwait(false);
        r.EnsureSuccess();
        try
        {
            using var json = JsonDocument.Parse(r.StdOut);
            var received = json.RootElement.GetProperty("end").GetProperty("sum_received");
            return new Iperf3Result(received.GetProperty("bits_per_second").GetDouble(), received.GetProperty("bytes").GetInt64(),
                received.GetProperty("seconds").GetDouble());
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            // iperf3 -J can exit 0 with an "error" member and no totals (a data connection reset mid-test): say what it said.
            string said = r.StdOut.Contains("\"error\"", StringComparison.Ordinal)
                ? " (" + System.Text.RegularExpressions.Regex.Match(r.StdOut, "\"error\"\\s*:\\s*\"([^\"]*)\"").Groups[1].Value + ")"
                : "";
            throw new LabException($"iperf3 output not understood: {e.Message}{said}", e);
        }
    }

    /// <summary>
    /// Reads kernel SNMP/MIB counters of <paramref name="ns"/> (<c>nstat -asz</c>: absolute, history untouched), e.g.
    /// <c>MPTcpExtMPCapableSYNACKRX</c>, <c>MPTcpExtMPJoinSynAckRx</c>, <c>TcpExtTCPSynRetrans</c>. Unknown names read 0.
    /// </summary>
    public static async Task<IReadOnlyDictionary<string, long>> ReadCountersAsync(NetNamespace ns, params string[] names)
    {
        ArgumentNullException.ThrowIfNull(ns);
        var output = await ns.CheckAsync("nstat", ["-asz", .. names]).ConfigureAwait(false);
        var counters = names.ToDictionary(n => n, _ => 0L);
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 2 && counters.ContainsKey(f[0]) && long.TryParse(f[1], CultureInfo.InvariantCulture, out var v))
            {
                counters[f[0]] = v;
            }
        }

        return counters;
    }

    /// <summary>Writes <paramref name="bytes"/> random bytes to <paramref name="path"/>; returns their SHA-256 (hex, lower case).</summary>
    public static string CreateRandomFile(string path, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        using var file = File.Create(path);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        for (var left = bytes; left > 0; left -= buffer.Length)
        {
            var n = (int)Math.Min(buffer.Length, left);
            RandomNumberGenerator.Fill(buffer.AsSpan(0, n));
            file.Write(buffer, 0, n);
            sha.AppendData(buffer, 0, n);
        }

        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>SHA-256 of a file (hex, lower case).</summary>
    public static string Sha256OfFile(string path)
    {
        using var file = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }
}
