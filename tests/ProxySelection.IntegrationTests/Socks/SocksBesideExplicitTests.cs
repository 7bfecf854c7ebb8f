using System.Net;
using System.Net.Sockets;
using ProxySelection.IntegrationTests.Hosting;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Socks;

/// <summary>
/// The host-configured fronts beside, or in place of, the transparent mode on the real kernel: the Claim on the front's
/// upstream SYN (spec §7.10) and the handshake bound that keeps silent clients off the shared connection limit.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class SocksBesideExplicitTests
{
    private const int Port = 1080;
    private static readonly byte[] Key = Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    /// <summary>
    /// No transparent leg connects to the server at the same time: the Claim is there because the front's leg is
    /// registered with the egress hook, not by coincidence.
    /// </summary>
    [Test]
    public async Task SocksBesideExplicit_UpstreamSynCarriesVerifiedClaimOfTheProxy()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var keyFile = Path.Combine(lab.Directory, "operator.key");
        await File.WriteAllTextAsync(keyFile, Convert.ToHexString(Key));
        var proxy = await lab.StartProxyAsync("--key-file", keyFile, "--proxy-id", "3", "--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}",
            "--set", "Proxy:ControlSocket=none");
        var capture = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "up.pcap"),
            "tcp port 80 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn");

        var output = Path.Combine(lab.Directory, "download.bin");
        var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60), "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}");
        await ProxyLab.WaitForLineAsync(proxy, "socks-relay ", "Completed");
        var packets = await capture.StopAsync();
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        var ring = new MpProxyKeyRing(1, Key);
        var syns = Captures.Segments(packets).Where(s => s.Source == TwoPathTopology.ProxyUpV4).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
            Assert.That(ProxyLab.Lines(proxy, "syn "), Is.Empty, "the client addressed the proxy: nothing intercepted, no transparent leg");
            Assert.That(syns, Is.Not.Empty, "the front's leg SYN left the proxy");
            Assert.That(syns.Select(s => ProxyUpstreamClaimTests.Read(s, ring)), Has.All.EqualTo(new ProxySignal(SignalKind.Claim, 3, 8)),
                "a verified Claim of this proxy (id 3, priority 8) on the leg's SYN");
            Assert.That(ProxyLab.Counter(proxy, "upstream_signals_added"), Is.GreaterThanOrEqualTo(1));
        });
    }

    /// <summary>
    /// Capacity 4, so the handshake bound is its floor (16): ten silent clients hold no slot of the limit, so an
    /// authenticated client still gets through; six more fill the bound and the ones past it are closed at once.
    /// </summary>
    [Test]
    public async Task SilentClients_HoldNoConnectionSlot_OthersRelayedAndThoseOverTheHandshakeBoundClosed()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var proxy = await ProxyLab.StartProxysel(lab.Topology.Proxy, ["--mode", "socks", "--set", "Proxy:ControlSocket=none",
            "--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--set", "Proxy:Capacity=4"]).WaitRunningAsync();
        await ProxyLab.WaitForLineAsync(proxy, "socks listening ", "transport=mptcp");
        var silent = new List<Socket>();
        try
        {
            for (int i = 0; i < 10; i++)
            {
                silent.Add(await ConnectAsync(lab) ?? throw new AssertionException("a silent client was refused under the handshake bound"));
            }

            var output = Path.Combine(lab.Directory, "download.bin");
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(30), "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}");

            // 16 in their handshake at most: 10 silent + 6 more fill it, 4 past it are closed at once.
            var extra = new List<Socket>();
            int resetAtConnect = 0;
            for (int i = 0; i < 10; i++)
            {
                if (await ConnectAsync(lab) is { } connected)
                {
                    extra.Add(connected);
                }
                else
                {
                    resetAtConnect++;
                }
            }

            silent.AddRange(extra);
            var buffer = new byte[16];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            var reads = extra.Select(async s =>
            {
                try
                {
                    return await s.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, timeout.Token) <= 0;
                }
                catch (SocketException)
                {
                    return true;
                }
                catch (OperationCanceledException)
                {
                    return false;
                }
            }).ToList();
            int closed = resetAtConnect + (await Task.WhenAll(reads).WaitAsync(ProxyLab.Timeout)).Count(c => c);
            await proxy.StopAsync(ProxyLab.Timeout);
            TestContext.Progress.WriteLine(proxy.Output);

            Assert.Multiple(() =>
            {
                Assert.That(curl.ExitCode, Is.Zero, curl.StdErr + "\n" + proxy.Output);
                Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
                Assert.That(closed, Is.EqualTo(4), "the clients past the bound of 16 handshakes, closed before the handshake timeout (10 s)");
                Assert.That(ProxyLab.Lines(proxy, "socks "), Has.Exactly(4).Contains("refused (handshakes at their bound)"));
                Assert.That(ProxyLab.Lines(proxy, "proxysel: socks "), Has.Some.Contains("refused=4").And.Contains("connected=1"));
            });
        }
        finally
        {
            foreach (var socket in silent)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>Beside the explicit mode, capacity 4: ten silent SOCKS clients leave the transparent mode its slots.</summary>
    [Test]
    public async Task SilentSocksClients_TransparentFlowStillInterceptedNotDeferredAtCapacity()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync("--socks", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--set", "Proxy:Capacity=4", "--set", "Proxy:ControlSocket=none");
        var silent = new List<Socket>();
        try
        {
            for (int i = 0; i < 10; i++)
            {
                // Refused ones (a slot of the limit taken by the others) are left out: what counts is the transparent flow.
                if (await ConnectAsync(lab) is { } connected)
                {
                    silent.Add(connected);
                }
            }

            var output = Path.Combine(lab.Directory, "download.bin");
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(30));
            await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
            await proxy.StopAsync(ProxyLab.Timeout);
            TestContext.Progress.WriteLine(proxy.Output);

            Assert.Multiple(() =>
            {
                Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
                Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
                Assert.That(ProxyLab.Lines(proxy, "syn "), Has.None.Contains("AtCapacity"), "no slot was held by a silent client");
                Assert.That(ProxyLab.Lines(proxy, "syn "), Has.Some.Contains("HoldAndProbe (CacheMiss)"));
            });
        }
        finally
        {
            foreach (var socket in silent)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>A silent client: connected, or null when the proxy closed it (a reset) before the connect returned.</summary>
    private static async Task<Socket?> ConnectAsync(ProxyLab lab)
    {
        var socket = await lab.Topology.Client.RunInNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        using var timeout = new CancellationTokenSource(ProxyLab.Timeout);
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ProxyPath1V4), Port), timeout.Token);
            return socket;
        }
        catch (SocketException)
        {
            socket.Dispose();
            return null;
        }
    }
}
