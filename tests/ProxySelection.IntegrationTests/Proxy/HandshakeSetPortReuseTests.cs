using System.Globalization;
using ProxySelection.Interception.Rules;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// The handshake set (issue 12) remembers an intercepted SYN by client address, client port and server address: no
/// ipset type holds the destination port too. A busy client reuses its ports within seconds, so a flow the proxy passes
/// can share the key of a handshake it held a moment before, toward the same server's other intercepted port; its ACKs
/// then matched the set and went to the listener, which reset them (the bench's pass-through rounds: 68–161 errors per
/// second of wrk after a holding round). A passed SYN now removes its key from the set.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class HandshakeSetPortReuseTests
{
    private const string ClientPort = "40123";
    private const int OtherPort = 8080;

    [TestCase(false)]
    [TestCase(true)]
    public async Task PassedFlowReusingAHeldHandshakesClientPort_TowardTheServersOtherInterceptedPort_IsNotCaptured(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 64 * 1024);
        await lab.StartNginxAsync();
        await using var plain = await StartPlainServerAsync(lab, v6);
        var proxy = ProxyLab.StartProxysel(lab.Topology.Proxy, "--ports", $"80,{OtherPort}");
        await proxy.WaitForOutputAsync("proxysel: running", ProxyLab.Timeout);

        // Held: an MPTCP client toward the TCP-only nginx, from a fixed port.
        var heldFile = Path.Combine(lab.Directory, "held.out");
        var held = await GetAsync(lab, v6, 80, heldFile, mptcp: true);
        string set = IpSetNames.Handshake("PSEL", v6);
        string key = $"{(v6 ? TwoPathTopology.ClientPath1V6 : TwoPathTopology.ClientPath1V4)},tcp:{ClientPort},{TwoPathTopology.ServerAddress(v6)}";
        var recorded = await lab.Topology.Proxy.RunAsync("ipset", ["test", set, key], ProxyLab.Timeout);

        // Passed: a plain TCP client from the same port to the same server's other intercepted port, at once (both bind
        // with SO_REUSEADDR, as the kernel's own port choice would reuse it).
        var passedFile = Path.Combine(lab.Directory, "passed.out");
        var passed = await GetAsync(lab, v6, OtherPort, passedFile, mptcp: false);
        var forgotten = await lab.Topology.Proxy.RunAsync("ipset", ["test", set, key], ProxyLab.Timeout);
        // The rule that sends a remembered handshake's socketless ACK to the listener: the held flow's segments all find
        // its socket first, so any packet counted here belonged to the passed flow.
        var rules = await lab.Topology.Proxy.CheckAsync(v6 ? "ip6tables" : "iptables", ["-t", "mangle", "-L", "PSEL_TPROXY", "-v", "-n", "-x"], ProxyLab.Timeout);
        long captured = rules.Split('\n').Where(l => l.Contains("match-set", StringComparison.Ordinal) && l.Contains("TPROXY", StringComparison.Ordinal))
            .Sum(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], CultureInfo.InvariantCulture));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"{proxy.Output}\nheld: {held.StdErr}\npassed: {passed.StdErr}");

        Assert.Multiple(() =>
        {
            Assert.That(held.ExitCode, Is.Zero, held.StdErr);
            Assert.That(File.Exists(heldFile) ? ProxyLab.Sha256Of(heldFile) : "no file", Is.EqualTo(sha));
            Assert.That(recorded.ExitCode, Is.Zero, $"the held handshake is in {set} when the passed flow starts: {recorded.StdErr}");
            Assert.That(passed.ExitCode, Is.Zero, $"the passed flow was not reset: {passed.StdErr}");
            Assert.That(File.Exists(passedFile) ? ProxyLab.Sha256Of(passedFile) : "no file", Is.EqualTo(sha));
            Assert.That(forgotten.ExitCode, Is.Not.Zero, "the passed SYN removed the key it shared");
            Assert.That(captured, Is.Zero, $"no segment of the passed flow went to the listener:\n{rules}");
            Assert.That(ProxyLab.Lines(proxy, "accepted "), Has.Count.EqualTo(1), "only the MPTCP client's connection reached the proxy");
            Assert.That(ProxyLab.Counter(proxy, "relayed"), Is.EqualTo(1));
        });
    }

    /// <summary>
    /// The held connection ends with the proxy's side in TIME_WAIT (the server closes first, the relay passes its FIN on).
    /// A plain TCP client that reuses that very 4-tuple at once is passed by the verdict, but it cannot be passed: TCP's
    /// early demux gives its SYN to the TIME_WAIT socket and forwarding then drops it, and its later segments would land
    /// on that socket too (tried: the connect timed out). The ruleset's socket match hands it to the listener instead
    /// (the TIME_WAIT socket accepts a newer SYN), so the proxy relays it: taken over, and it completes.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task PassedFlowReusingAHeldConnectionsFourTuple_WhileTheProxyHoldsItsTimeWait_IsTakenOverAndCompletes(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync();

        var heldFile = Path.Combine(lab.Directory, "held.out");
        var held = await GetAsync(lab, v6, 80, heldFile, mptcp: true);
        string server = TwoPathTopology.ServerAddress(v6);
        // The client's FIN reaches the proxy a moment after the client exits.
        string timeWait = "";
        for (var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5); !timeWait.Contains(server, StringComparison.Ordinal) && DateTime.UtcNow < deadline;)
        {
            timeWait = await lab.Topology.Proxy.CheckAsync("ss", ["-Htan", "state", "time-wait", $"sport = :80 and dport = :{ClientPort}"], ProxyLab.Timeout);
        }

        var passedFile = Path.Combine(lab.Directory, "passed.out");
        var passed = await GetAsync(lab, v6, 80, passedFile, mptcp: false);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"{proxy.Output}\ntime-wait at the proxy: {timeWait}\nheld: {held.StdErr}\npassed: {passed.StdErr}");

        Assert.Multiple(() =>
        {
            Assert.That(held.ExitCode, Is.Zero, held.StdErr);
            Assert.That(timeWait, Does.Contain(server), "the proxy's side of the held connection is in TIME_WAIT when the passed flow starts");
            Assert.That(passed.ExitCode, Is.Zero, passed.StdErr);
            Assert.That(File.Exists(passedFile) ? ProxyLab.Sha256Of(passedFile) : "no file", Is.EqualTo(sha));
            Assert.That(ProxyLab.Lines(proxy, "accepted "), Has.Count.EqualTo(2), "the TIME_WAIT socket handed the reused 4-tuple's SYN to the listener");
            Assert.That(ProxyLab.Counter(proxy, "relayed"), Is.EqualTo(2));
        });
    }

    private static Task<CommandResult> GetAsync(ProxyLab lab, bool v6, int port, string output, bool mptcp) =>
        lab.Topology.Client.RunAsync("python3", ["-c", Get, TwoPathTopology.ServerAddress(v6), port.ToString(CultureInfo.InvariantCulture), ClientPort, output,
            mptcp ? "mptcp" : "tcp"], TimeSpan.FromSeconds(30));

    /// <summary>GET /file.bin over HTTP/1.0 (the server closes first) from a bound port (argv: server, port, client port,
    /// output file, tcp|mptcp); the body goes to the file. Exits non-zero with the error on a reset or timeout.</summary>
    private const string Get = """
        import socket, sys
        host, port, local, out, protocol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM, 262 if protocol == 'mptcp' else 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(15)
        s.bind(('::' if family == socket.AF_INET6 else '0.0.0.0', local))
        s.connect((host, port))
        s.sendall(b'GET /file.bin HTTP/1.0\r\n\r\n')
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b'\r\n\r\n')
        if not head.startswith(b'HTTP/1.0 200') and not head.startswith(b'HTTP/1.1 200'):
            sys.exit('unexpected answer: ' + head[:80].decode(errors='replace'))
        open(out, 'wb').write(body)
        """;

    /// <summary>python3's HTTP server (plain TCP) on the server's address, port <see cref="OtherPort"/>, serving www/.</summary>
    private static async Task<LabProcess> StartPlainServerAsync(ProxyLab lab, bool v6)
    {
        var server = lab.Topology.Server;
        var process = server.StartProcess("python3",
            ["-m", "http.server", OtherPort.ToString(CultureInfo.InvariantCulture), "--bind", TwoPathTopology.ServerAddress(v6),
             "--directory", Path.Combine(lab.Directory, "www")]);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (true)
        {
            var listening = await server.CheckAsync("ss", ["-Hltn", $"sport = :{OtherPort}"], ProxyLab.Timeout);
            if (listening.Trim().Length > 0)
            {
                return process;
            }

            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"the plain server did not start: {process.Output}");
            }

            await Task.Delay(50);
        }
    }
}
