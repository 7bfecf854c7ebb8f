using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using ProxySelection.Host.Control;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// Issue 12 acceptance, spec §6: an on-path forger that sees the proxy's own probe and answers it first with the right
/// acknowledgment number (ISN + 1) sets a fact the proxy cannot tell from the truth. That fact is provisional: it lives
/// <c>Proxy:ObservedTtl</c> (10 s here, 60 s by default), the next own probe re-checks it, the truth replaces it, and only a
/// second agreeing answer gives the full life. About 40 s (three provisional lives and three downloads).
/// </summary>
[TestFixture]
[NonParallelizable]
[Category("Hostile")]
public sealed class OnPathForgeryTests
{
    private static readonly TimeSpan ProvisionalLife = TimeSpan.FromSeconds(10);

    [Test]
    public async Task ForgedProbeAnswerWithTheRightAck_FactProvisional_TruthReplacesItAtTheRecheck_ThenConfirmedForTheFullLife()
    {
        // The longest probe timeout: the forger answers from user space (an NFQUEUE), late on a loaded machine.
        await using var lab = await HostileLab.StartAsync("--set", "Proxy:ObservedTtl=" + ProvisionalLife.TotalSeconds.ToString(CultureInfo.InvariantCulture) + "s",
            "--set", "Proxy:ProbeTimeout=400ms");
        // An MPTCP server (nginx on every address of ManyDestinationsV6): the forgery says TCP-only, which would make this
        // downgrade proxy terminate every client's MPTCP toward it.
        var serverAddress = IPAddress.Parse(HostileLab.ManyDestinationsV6 + "1");
        var key = $"[{serverAddress}]:80";
        var url = $"http://[{serverAddress}]/file.bin";

        // 1. One forged SYN/ACK without MP_CAPABLE, ack = the probe's ISN + 1, and the probe's segments kept from the server
        // (a man in the middle: else the server's RST to the prober's ACK ends the probe before the engine reads it).
        CacheEntry forged;
        int forgeries;
        var server = lab.Proxy.Topology.Server;
        string[] intercept = ["INPUT", "-s", TwoPathTopology.ProxyUpV6, "-d", serverAddress.ToString(), "-p", "tcp", "--dport", "80", "-j", "DROP"];
        await using (var forger = await SynAckForger.StartAsync(server, _ => HostileOptions.Concat(HostileOptions.Mss()), ackOffset: 1, limit: 1))
        {
            // Appended after the forger's queue rule: the forger sees the SYN, then it goes no further.
            await server.CheckAsync("ip6tables", ["-A", .. intercept], ProxyLab.Timeout);
            // The forged handshake may break this download (its probe became the upstream leg): only the cache matters here.
            var download = lab.Proxy.CurlAsync(url, mptcp: true, Path.Combine(lab.Proxy.Directory, "forged.bin"), TimeSpan.FromSeconds(5));
            forged = await WaitForEntryAsync(lab, key, _ => true);
            await download.WaitAsync(TimeSpan.FromSeconds(30));
            forgeries = forger.Forged;
            await server.CheckAsync("ip6tables", ["-D", .. intercept], ProxyLab.Timeout);
        }

        // 2. The forger is gone. After the provisional life, the next connection re-checks: the truth replaces the forgery.
        await Task.Delay(ProvisionalLife + TimeSpan.FromSeconds(1));
        var recheck = await lab.DownloadLoopAsync(Task.CompletedTask, 1, TimeSpan.FromSeconds(60), _ => url);
        var truth = await WaitForEntryAsync(lab, key, e => e.State != forged.State);
        var afterRecheck = await SummaryAsync(lab);

        // 3. The next re-check agrees: the real capability gets the full life.
        await Task.Delay(ProvisionalLife + TimeSpan.FromSeconds(1));
        var confirm = await lab.DownloadLoopAsync(Task.CompletedTask, 1, TimeSpan.FromSeconds(60), _ => url);
        var confirmed = await WaitForEntryAsync(lab, key, e => e.Checked == "confirmed");
        var afterConfirm = await SummaryAsync(lab);

        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"on-path forgery with the right ack ({forgeries} forged): {forged}; re-check {truth} ({recheck}), {afterRecheck}; next {confirmed} ({confirm}), {afterConfirm}; load {HostileLab.Load()}"));
        Assert.Multiple(() =>
        {
            Assert.That(forgeries, Is.EqualTo(1), "the forger answered the probe once");
            Assert.That((forged.State, forged.Checked), Is.EqualTo(("TcpOnly", "provisional")), "the forgery took, but only provisionally");
            Assert.That(forged.TtlSeconds, Is.LessThanOrEqualTo(ProvisionalLife.TotalSeconds), "a forged fact lives the provisional life, not 10 minutes");
            Assert.That((truth.State, truth.Checked), Is.EqualTo(("MptcpCapable", "provisional")), "the re-check put the truth in its place");
            // When the dead upstream leg of step 1 removed the forged entry (spec §10.6) the truth's first probe is no re-check.
            Assert.That(afterRecheck.Changed, Is.EqualTo(afterRecheck.Rechecked), "a re-check in step 2 can only have found the fact changed");
            Assert.That((confirmed.State, confirmed.Checked), Is.EqualTo(("MptcpCapable", "confirmed")));
            Assert.That(confirmed.TtlSeconds, Is.GreaterThan(500), "the confirmed truth has the full 10-minute life");
            Assert.That(afterConfirm, Is.EqualTo((afterRecheck.Rechecked + 1, afterRecheck.Changed)), "the confirmation is a re-check that changed nothing");
            Assert.That(recheck.Succeeded + confirm.Succeeded, Is.EqualTo(2), "downloads after the forger left are whole");
        });
    }

    private sealed record CacheEntry(string State, string? Checked, double TtlSeconds)
    {
        public override string ToString() => FormattableString.Invariant($"{State} ({Checked}, {TtlSeconds:F1} s left)");
    }

    private static async Task<JsonObject> CacheShowAsync(HostileLab lab)
    {
        var exchange = await ControlClient.SendAsync(lab.ControlSocket, ControlCommand.CacheShow, ProxyLab.Timeout);
        Assert.That(exchange.Ok, Is.True, exchange.Error);
        return exchange.Reply;
    }

    /// <summary>Polls (bounded) until <paramref name="key"/> has an entry that <paramref name="match"/> accepts.</summary>
    private static async Task<CacheEntry> WaitForEntryAsync(HostileLab lab, string key, Func<CacheEntry, bool> match)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var reply = await CacheShowAsync(lab);
            var entry = (reply["entries"] as JsonArray ?? []).OfType<JsonObject>()
                .Where(e => (string?)e["destination"] == key)
                .Select(e => new CacheEntry((string)e["state"]!, (string?)e["checked"], (double)e["ttl_seconds"]!))
                .FirstOrDefault();
            if (entry is not null && match(entry))
            {
                return entry;
            }

            if (watch.Elapsed >= ProxyLab.Timeout)
            {
                var seen = lab.Events().Where(e => e.Destination == key).TakeLast(12)
                    .Select(e => $"{e.Event} {e.Kind} {e.Verdict ?? e.Outcome} {e.Reason} mp_capable={e.MpCapable} up={e.Up} down={e.Down}");
                Assert.Fail($"no matching cache entry for {key} (last: {entry}); its events: {string.Join(" | ", seen)}");
            }


            await Task.Delay(20);
        }
    }

    private static async Task<(long Rechecked, long Changed)> SummaryAsync(HostileLab lab)
    {
        var summary = (await CacheShowAsync(lab))["summary"] as JsonObject ?? [];
        return ((long?)summary["facts_rechecked"] ?? -1, (long?)summary["facts_changed"] ?? -1);
    }
}
