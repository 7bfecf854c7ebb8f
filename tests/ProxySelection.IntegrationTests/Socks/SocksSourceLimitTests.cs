using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Socks;

/// <summary>Issue 12 on the real kernel: one source's idle connections fill that source's share, not the proxy.</summary>
public sealed partial class SocksTests
{
    /// <summary>
    /// 300 connections that never speak from the client's second address (more than the 256 handshakes the proxy takes
    /// at once, all sources together), while curl from its first address downloads through the same daemon.
    /// </summary>
    [Test]
    public async Task Socks_300IdleConnectionsFromOneSource_AnotherSourceOfTheSameClientCompletesItsDownloads()
    {
        const int Idle = 300;
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 1024 * 1024);
        await lab.StartNginxAsync();
        var proxy = await StartSocksProxyAsync(lab, "--socks", $"0.0.0.0:{Port}");

        var crowd = new List<Socket>();
        try
        {
            var source = new IPEndPoint(IPAddress.Parse(TwoPathTopology.ClientPath2V4), 0);
            var front = new IPEndPoint(IPAddress.Parse(TwoPathTopology.ProxyPath2V4), Port);
            using (var timeout = new CancellationTokenSource(ProxyLab.Timeout))
            {
                for (int i = 0; i < Idle; i++)
                {
                    var socket = await lab.Topology.Client.RunInNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
                    crowd.Add(socket);
                    socket.Bind(source);
                    try
                    {
                        await socket.ConnectAsync(front, timeout.Token);
                    }
                    catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
                    {
                        // Refused at once: the reset can overtake the connect's completion.
                    }
                }
            }

            // Within the crowd's handshake timeout (10 s): its share is held while these run.
            var downloads = new List<(CommandResult Curl, string Output)>();
            for (int i = 0; i < 3; i++)
            {
                var output = Path.Combine(lab.Directory, $"download{i}.bin");
                downloads.Add((await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(20),
                    "--socks5", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--interface", TwoPathTopology.ClientPath1V4), output));
            }

            await proxy.StopAsync(ProxyLab.Timeout);
            TestContext.Progress.WriteLine(proxy.Output);

            var counters = ProxyLab.Lines(proxy, "proxysel: socks ").LastOrDefault() ?? "";
            var refused = Regex.Match(counters, @"refused=(\d+)");
            Assert.Multiple(() =>
            {
                foreach (var (curl, output) in downloads)
                {
                    Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
                    Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
                }

                Assert.That(ProxyLab.Lines(proxy, "socks "), Has.Some.Contains($"{TwoPathTopology.ClientPath1V4}:").And.Contains("Succeeded"));
                Assert.That(ProxyLab.Lines(proxy, "socks "), Has.Some.Contains($"{TwoPathTopology.ClientPath2V4}:").And.Contains("refused (handshakes from this source at their bound)"));
                // 16 of the crowd held (the per-source default), the rest refused at the accept.
                Assert.That(refused.Success ? long.Parse(refused.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : -1, Is.EqualTo(Idle - 16));
                Assert.That(counters, Does.Contain("connected=3"));
            });
        }
        finally
        {
            foreach (var socket in crowd)
            {
                socket.Dispose();
            }
        }
    }
}
