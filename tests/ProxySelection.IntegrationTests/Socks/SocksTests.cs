using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ProxySelection.IntegrationTests.Hosting;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Socks;

/// <summary>
/// The host-configured mode (spec §7.10) on the real kernel: <c>proxysel run --mode socks</c> in the proxy namespace of
/// the two-path lab, curl under mptcpize in the client namespace (two paths, a subflow endpoint on the second), nginx
/// (plain TCP) in the server namespace. Nothing is intercepted: the client addresses the proxy on purpose.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed partial class SocksTests
{
    private const int Port = 1080;
    private const int Size = 16 * 1024 * 1024;
    private const string ServerName = "server.test";

    /// <summary>
    /// <c>--socks5-hostname</c>: the proxy resolves the name (ATYP 3) with the system resolver; <c>ip netns exec</c> mounts
    /// <c>/etc/netns/NAME/hosts</c> over <c>/etc/hosts</c> for the daemon, so the name exists for this proxy alone.
    /// </summary>
    [Test]
    public async Task Socks5Hostname_MptcpClientWithTwoPaths_DownloadIntactTwoSubflowsTcpServerLeg()
    {
        await using var lab = await ProxyLab.StartAsync();
        var resolver = await LabResolverAsync(lab);
        try
        {
            var sha = lab.WriteFile("file.bin", Size);
            await lab.StartNginxAsync();
            var socket = Path.Combine(lab.Directory, "run", "proxysel.sock");
            var proxy = await StartSocksProxyAsync(lab, "--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--set", "Proxy:ControlSocket=" + socket,
                "--set", "Proxy:DrainTimeout=30s");

            // About 4 s at 4 MB/s: long enough for the second subflow and a look at the status.
            var output = Path.Combine(lab.Directory, "download.bin");
            var transfer = lab.CurlAsync($"http://{ServerName}/file.bin", mptcp: true, output, TimeSpan.FromSeconds(60),
                "--socks5-hostname", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--limit-rate", "4M");
            var (held, statusJson) = await ControlCli.WaitForSubflowsAsync(lab, socket, 2);
            var status = JsonNode.Parse(statusJson)!;
            var curl = await transfer.WaitAsync(TimeSpan.FromSeconds(70));
            var relay = await ProxyLab.WaitForLineAsync(proxy, "socks-relay ", "Completed");
            await proxy.StopAsync(ProxyLab.Timeout);
            TestContext.Progress.WriteLine(statusJson);
            TestContext.Progress.WriteLine(proxy.Output);

            var rules = await lab.Topology.Proxy.CheckAsync("iptables-save", [], ProxyLab.Timeout);
            Assert.Multiple(() =>
            {
                Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
                Assert.That(curl.StdOut, Does.StartWith($"200 {Size} "));
                Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
                Assert.That(ProxyLab.Lines(proxy, "socks "), Has.Some.Contains($"-> {ServerName}:80: Succeeded ({TwoPathTopology.ServerV4}:80 tcp)"));
                Assert.That(relay, Does.Contain("client=Active").And.Contains("upstream=NotMptcp"), "client leg MPTCP, server leg plain TCP");
                Assert.That(Subflows(relay), Is.EqualTo(2), "the client's second path joined");
                Assert.That((string?)status["daemon"]!["mode"], Is.EqualTo("host-configured"));
                Assert.That((string?)held["mode"], Is.EqualTo("host-configured"));
                Assert.That((string?)held["server"], Is.EqualTo(TwoPathTopology.ServerV4 + ":80"), "the destination the host named, resolved");
                Assert.That((string?)held["client"], Does.StartWith(TwoPathTopology.ClientPath1V4 + ":"));
                Assert.That((double?)held["age_seconds"], Is.GreaterThan(0));
                Assert.That(held["subflows"]!.AsArray().Select(s => (string?)s!["remote"]), Has.Some.StartsWith(TwoPathTopology.ClientPath2V4 + ":"));
                Assert.That((long)status["decisions"]!["socks_connected"]!, Is.EqualTo(1));
                Assert.That(ProxyLab.Lines(proxy, "proxysel: socks "), Has.Some.Contains("connected=1"));
                Assert.That(ProxyLab.Lines(proxy, "syn "), Is.Empty, "nothing is intercepted in the host-configured mode");
                Assert.That(rules, Does.Not.Contain("PSEL"), "no rule installed");
                Assert.That(proxy.ExitCode, Is.Zero);
            });
        }
        finally
        {
            Directory.Delete(resolver, recursive: true);
        }
    }

    /// <summary><c>--socks5</c>: curl sends the address itself (ATYP 1 or 4); one dual-stack listener serves both.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task Socks5Address_MptcpClient_DownloadIntactTwoSubflows(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var proxy = await StartSocksProxyAsync(lab, "--socks", $"[::]:{Port}");
        string socks = v6 ? $"[{TwoPathTopology.ProxyPath1V6}]:{Port}" : $"{TwoPathTopology.ProxyPath1V4}:{Port}";

        var output = Path.Combine(lab.Directory, "download.bin");
        var curl = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60), "--socks5", socks, "--limit-rate", "8M");
        var relay = await ProxyLab.WaitForLineAsync(proxy, "socks-relay ", "Completed");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        string server = v6 ? $"[{TwoPathTopology.ServerV6}]:80" : $"{TwoPathTopology.ServerV4}:80";
        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Lines(proxy, "socks "), Has.Some.Contains($"-> {server}: Succeeded"));
            Assert.That(relay, Does.Contain($"-> {server}:").And.Contains("client=Active").And.Contains("upstream=NotMptcp"));
            Assert.That(Subflows(relay), Is.EqualTo(2));
            Assert.That(ProxyLab.Lines(proxy, "socks listens on "), Has.One.Contains("[::]:1080 with no authentication"), "a wildcard without users is warned about");
        });
    }

    /// <summary>One trace per SOCKS connection: a root span of mode host-configured, the upstream connect as its child, and the kernel's subflow events.</summary>
    [Test]
    public async Task Socks_OtlpExport_RootSpanHostConfiguredWithUpstreamConnectAndSubflowEvents()
    {
        await using var lab = await ProxyLab.StartAsync();
        lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var endpoint = Telemetry.TelemetrySampleTests.OtlpEndpoint("http");
        await using var receiver = await Telemetry.OtlpHttpReceiver.StartAsync(lab.Topology.Proxy,
            int.Parse(endpoint.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
        var proxy = await StartSocksProxyAsync(lab, "--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}",
            "--set", "Telemetry:Otlp:Endpoint=http://" + endpoint, "--set", "Telemetry:Otlp:Protocol=http/protobuf", "--set", "Telemetry:ExportInterval=500ms");

        var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, Path.Combine(lab.Directory, "file.out"), TimeSpan.FromSeconds(60),
            "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--limit-rate", "8M");
        await ProxyLab.WaitForLineAsync(proxy, "socks-relay ", "Completed");
        await proxy.StopAsync(ProxyLab.Timeout);
        var spans = await receiver.WaitForSpansAsync(s => s.Any(x => x.Name == "proxysel.connection"), ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        var root = spans.Single(s => s.Name == "proxysel.connection");
        var connect = spans.Single(s => s.Name == "proxysel.upstream_connect");
        var established = root.Events.Where(e => e.Name == "proxysel.subflow.established").ToList();
        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(root.ParentSpanId, Is.Empty, "a root span");
            Assert.That(root.Attributes["proxysel.mode"], Is.EqualTo("host-configured"));
            Assert.That(root.Attributes["proxysel.decision"], Is.EqualTo("socks"));
            Assert.That(root.Attributes["client.address"], Is.EqualTo(TwoPathTopology.ClientPath1V4));
            Assert.That(root.Attributes["server.address"], Is.EqualTo(TwoPathTopology.ServerV4));
            Assert.That(root.Attributes["server.port"], Is.EqualTo(80L));
            Assert.That(root.Attributes["proxysel.close_reason"], Is.EqualTo("Completed"));
            Assert.That((long)root.Attributes["proxysel.bytes.downstream"]!, Is.GreaterThanOrEqualTo(Size));
            Assert.That(root.Attributes["proxysel.subflows"], Is.EqualTo(2L));
            Assert.That(connect.ParentSpanId, Is.EqualTo(root.SpanId));
            Assert.That(connect.Attributes["proxysel.upstream.protocol"], Is.EqualTo("tcp"));
            Assert.That(connect.Attributes["proxysel.upstream.connect_status"], Is.EqualTo("Connected"));
            Assert.That(established.Select(e => e.Attributes["network.peer.address"]),
                Is.EquivalentTo(new[] { TwoPathTopology.ClientPath1V4, TwoPathTopology.ClientPath2V4 }), "one subflow per client path");
        });
    }

    /// <summary>SIGTERM: the relayed SOCKS connection finishes within the drain; a new SOCKS client is not accepted any more.</summary>
    [Test]
    public async Task Socks_Sigterm_DrainsTheRelayedConnectionAndTakesNoNewOne()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var proxy = await StartSocksProxyAsync(lab, "--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--set", "Proxy:DrainTimeout=40s");

        // 16 MB at 2 MB/s: SIGTERM lands early in the transfer.
        var output = Path.Combine(lab.Directory, "download.bin");
        var transfer = lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60),
            "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--limit-rate", "2M");
        await ProxyLab.WaitForLineAsync(proxy, "socks ", "Succeeded");
        Assert.That(proxy.Signal(15 /* SIGTERM */), Is.True);
        var draining = await ProxyLab.WaitForLineAsync(proxy, "proxysel: draining ", "held connection");
        var late = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, Path.Combine(lab.Directory, "late.bin"), TimeSpan.FromSeconds(10),
            "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}");
        var curl = await transfer.WaitAsync(TimeSpan.FromSeconds(70));
        var exit = await proxy.WaitForExitAsync(TimeSpan.FromSeconds(50));
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(draining, Does.Contain("draining 1 held connection"));
            Assert.That(late.ExitCode, Is.Not.Zero, "the listener is closed during the drain");
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha), "the relayed transfer finished inside the drain");
            Assert.That(ProxyLab.Lines(proxy, "proxysel: drained"), Has.Count.EqualTo(1));
            Assert.That(exit, Is.Zero);
        });
    }

    /// <summary>Every failure gets the RFC 1928 §6 code and a close; the daemon goes on serving.</summary>
    [Test]
    public async Task Socks_FailuresOnTheRealKernel_RfcReplyThenCloseAndTheDaemonGoesOn()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var resolver = await LabResolverAsync(lab);
        LabProcess proxy;
        try
        {
            proxy = await StartSocksProxyAsync(lab, "--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}");
        }
        finally
        {
            // Read when the daemon starts (ip netns exec mounts it then): the files may go now.
            Directory.Delete(resolver, recursive: true);
        }

        var server = IPAddress.Parse(TwoPathTopology.ServerV4).GetAddressBytes();

        // Port 81: nginx is not there, the server's kernel answers the SYN with a reset.
        var refused = await ExchangeAsync(lab, [5, 1, 0], [5, 1, 0, 1, .. server, 0, 81]);
        var bind = await ExchangeAsync(lab, [5, 1, 0], [5, 2, 0, 1, .. server, 0, 80]);
        var addressType = await ExchangeAsync(lab, [5, 1, 0], [5, 1, 0, 9, 0, 0]);
        var unknownName = await ExchangeAsync(lab, [5, 1, 0], [5, 1, 0, 3, 12, .. "nowhere.test"u8, 0, 80]);
        var loopback = await ExchangeAsync(lab, [5, 1, 0], [5, 1, 0, 1, 127, 0, 0, 1, 0x04, 0x38]);
        // The proxy host's own addresses: its own front (a loop) and another interface's address.
        var self = await ExchangeAsync(lab, [5, 1, 0], [5, 1, 0, 1, .. IPAddress.Parse(TwoPathTopology.ProxyPath1V4).GetAddressBytes(), 0x04, 0x38]);
        var ownUplink = await ExchangeAsync(lab, [5, 1, 0], [5, 1, 0, 1, .. IPAddress.Parse(TwoPathTopology.ProxyUpV4).GetAddressBytes(), 0, 80]);
        var socks4 = await ExchangeAsync(lab, [4, 1, 0, 80, .. server, 0]);
        var curlRefused = await lab.CurlAsync($"http://{TwoPathTopology.ServerV4}:81/", mptcp: true, Path.Combine(lab.Directory, "none"), null,
            "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}");
        var output = Path.Combine(lab.Directory, "download.bin");
        var after = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, null, "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}");
        bool running = !proxy.HasExited;
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            ExpectReplyThenClose(refused, [5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0], "connection refused 0x05");
            ExpectReplyThenClose(bind, [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0], "command not supported 0x07");
            ExpectReplyThenClose(addressType, [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0], "address type not supported 0x08");
            ExpectReplyThenClose(unknownName, [5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0], "host unreachable 0x04");
            ExpectReplyThenClose(loopback, [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0], "not allowed 0x02: the proxy's own loopback");
            ExpectReplyThenClose(self, [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0], "not allowed 0x02: the proxy's own SOCKS front");
            ExpectReplyThenClose(ownUplink, [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0], "not allowed 0x02: another address of the proxy host");
            ExpectReplyThenClose(socks4, [5, 0xFF], "no acceptable method");
            Assert.That(curlRefused.ExitCode, Is.Not.Zero);
            Assert.That(curlRefused.StdErr, Does.Contain("(5)"), "curl read reply 0x05");
            Assert.That(running, Is.True, "no input took the daemon down");
            Assert.That(ProxyLab.Lines(proxy, "socks listens on "), Is.Empty, "one address, not a wildcard: no warning");
            Assert.That(after.ExitCode, Is.Zero, after.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: socks "), Has.Some.Contains("connect_failed=6").And.Contains("handshake_failed=3").And.Contains("connected=1"));
        });
    }

    [Test]
    public async Task Socks_UsersConfigured_RightPasswordRelaysWrongPasswordAndNoAuthRefused()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var users = Path.Combine(lab.Directory, "users");
        await File.WriteAllTextAsync(users, "alice:wonderland\n");
        var proxy = await StartSocksProxyAsync(lab, "--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--socks-users", users);

        var output = Path.Combine(lab.Directory, "download.bin");
        var right = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, null,
            "--proxy", $"socks5h://alice:wonderland@{TwoPathTopology.ProxyPath1V4}:{Port}");
        var wrong = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, Path.Combine(lab.Directory, "none"), null,
            "--proxy", $"socks5h://alice:looking-glass@{TwoPathTopology.ProxyPath1V4}:{Port}");
        var noAuth = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, Path.Combine(lab.Directory, "none"), null,
            "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}");
        var wrongRaw = await ExchangeAsync(lab, [5, 1, 2], [1, 5, .. "alice"u8, 3, .. "bad"u8]);
        var noAuthRaw = await ExchangeAsync(lab, [5, 1, 0]);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Lines(proxy, "proxysel: running"), Has.Some.Contains("auth=username/password"));
            Assert.That(right.ExitCode, Is.Zero, right.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(wrong.ExitCode, Is.Not.Zero, "a wrong password is refused");
            Assert.That(noAuth.ExitCode, Is.Not.Zero, "NO AUTH is not accepted once users are configured");
            ExpectReplyThenClose(wrongRaw, [5, 2, 1, 1], "RFC 1929 failure status, then close");
            ExpectReplyThenClose(noAuthRaw, [5, 0xFF], "no acceptable method, then close");
            Assert.That(ProxyLab.Lines(proxy, "socks "), Has.Some.Contains("authentication failed"));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: socks "), Has.Some.Contains("connected=1"));
        });
    }

    /// <summary>
    /// <c>/etc/netns/NAME/{hosts,resolv.conf}</c> for the proxy namespace, which <c>ip netns exec</c> mounts over /etc for
    /// the daemon: <see cref="ServerName"/> is the lab server, and a name not in it asks a resolver on the namespace's
    /// own loopback, which answers nothing (no query leaves the lab). Returns the folder; the caller deletes it.
    /// </summary>
    private static async Task<string> LabResolverAsync(ProxyLab lab)
    {
        var folder = Path.Combine("/etc/netns", lab.Topology.Proxy.Name);
        Directory.CreateDirectory(folder);
        await File.WriteAllTextAsync(Path.Combine(folder, "hosts"), $"127.0.0.1 localhost\n{TwoPathTopology.ServerV4} {ServerName}\n");
        await File.WriteAllTextAsync(Path.Combine(folder, "resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
        return folder;
    }

    /// <summary>The shipped sample starts as it is, with the lab's address and a users file of the test's.</summary>
    [Test]
    public async Task HostConfiguredSample_StartsInNamespace_ProxiesAnAuthenticatedDownload()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 1024 * 1024);
        await lab.StartNginxAsync();
        var users = Path.Combine(lab.Directory, "users");
        await File.WriteAllTextAsync(users, "alice:wonderland\n");
        var sample = Path.Combine(RepositoryPaths.Samples, "host-configured-socks.json");
        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--config", sample,
            "--set", "Proxy:SocksUsersFile=" + users, "--set", "Proxy:ControlSocket=none"]).WaitRunningAsync();

        var output = Path.Combine(lab.Directory, "download.bin");
        var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, null,
            "--proxy", $"socks5h://alice:wonderland@{TwoPathTopology.ProxyPath1V4}:{Port}");
        await ProxyLab.WaitForLineAsync(proxy, "socks-relay ", "Completed");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: running"), Has.Some.EqualTo("proxysel: running mode=host-configured socks=0.0.0.0:1080 auth=username/password id=20"));
            Assert.That(proxy.ExitCode, Is.Zero);
        });
    }

    private static void ExpectReplyThenClose((byte[] Received, bool Closed) actual, byte[] expected, string what)
    {
        Assert.That(actual.Received, Is.EqualTo(expected), what);
        Assert.That(actual.Closed, Is.True, what + ": closed after the reply");
    }

    private static async Task<LabProcess> StartSocksProxyAsync(ProxyLab lab, params string[] extra)
    {
        // No control socket unless the test names one: the default path may be another run's.
        string[] control = extra.Any(e => e.StartsWith("Proxy:ControlSocket=", StringComparison.Ordinal)) ? [] : ["--set", "Proxy:ControlSocket=none"];
        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--mode", "socks", .. control, .. extra]).WaitRunningAsync();
        await ProxyLab.WaitForLineAsync(proxy, "socks listening ", "transport=mptcp");
        return proxy;
    }

    /// <summary>
    /// A raw SOCKS client in the client namespace: sends each message in turn, reading what the proxy answers after
    /// each; returns every byte the proxy sent and whether it closed the connection afterwards.
    /// </summary>
    private static async Task<(byte[] Received, bool Closed)> ExchangeAsync(ProxyLab lab, params byte[][] messages)
    {
        using var socket = await lab.Topology.Client.RunInNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        using var timeout = new CancellationTokenSource(ProxyLab.Timeout);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ProxyPath1V4), Port), timeout.Token);
        var received = new List<byte>();
        var buffer = new byte[64];
        bool closed = false;
        foreach (var message in messages)
        {
            try
            {
                await socket.SendAsync(message, SocketFlags.None, timeout.Token);
            }
            catch (SocketException)
            {
                // Closed after an earlier failure reply: nothing more goes out.
                closed = true;
                break;
            }

            // Each reply is one segment on a quiet lab link: one read takes all of it.
            int read = await ReadAsync(socket, buffer, timeout.Token);
            if (read <= 0)
            {
                closed = true;
                break;
            }

            received.AddRange(buffer.AsSpan(0, read).ToArray());
        }

        if (!closed)
        {
            closed = await ReadAsync(socket, buffer, timeout.Token) <= 0;
        }

        return ([.. received], closed);
    }

    /// <summary>Bytes read, 0 at the end of the stream, -1 for a reset.</summary>
    private static async Task<int> ReadAsync(Socket socket, byte[] buffer, CancellationToken cancellationToken)
    {
        try
        {
            return await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
        }
        catch (SocketException)
        {
            return -1;
        }
    }

    private static int Subflows(string relay) => int.Parse(SubflowsRegex().Match(relay).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    [GeneratedRegex(@"subflows=(\d+)")]
    private static partial Regex SubflowsRegex();
}
