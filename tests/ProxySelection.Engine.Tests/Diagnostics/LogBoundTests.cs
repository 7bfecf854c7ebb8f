using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Tests.Flows;
using ProxySelection.Tests;
using ProxySelection.Wire;

namespace ProxySelection.Engine.Tests.Diagnostics;

/// <summary>Issue 12: the daemon's log stays bounded under a flood over any number of destinations.</summary>
public sealed class LogBoundTests
{
    [Test]
    public async Task FloodOverDistinctSourcesAndDestinations_ProbeSocketsExhausted_LogStaysUnderItsBytesPerMinute()
    {
        var log = new RecordingLogger();
        // The global probe cap off: every SYN must reach a probe socket for the warnings this bounds.
        await using var h = new EngineHarness(o => o.ProbeRateGlobal = 0, log: log);
        h.Probes.FailWith = SocketError.TooManyOpenSockets;
        const int PerSecond = 1_000;
        const int Seconds = 60;

        for (int i = 0; i < PerSecond * Seconds; i++)
        {
            // Every SYN from another /24 to another destination: no rate limit or cache entry stands in the way.
            h.Ingress(Syn(i));
            h.Time.Advance(TimeSpan.FromSeconds(1.0 / PerSecond));
        }

        var written = log.Entries.Where(e => e.Level >= LogLevel.Information).ToList();
        long bytes = written.Sum(e => Encoding.UTF8.GetByteCount(e.Message) + 1);
        TestContext.Progress.WriteLine($"{PerSecond * Seconds} SYNs in {Seconds} s, every probe socket failing: {written.Count} lines, {bytes} bytes a minute " +
            $"(unbounded: {PerSecond * Seconds} lines); last: {written.LastOrDefault().Message}");
        Assert.Multiple(() =>
        {
            Assert.That(h.Engine.Counters.ProbesFailed, Is.EqualTo(PerSecond * Seconds), "every probe failed, and was counted");
            Assert.That(written, Has.Count.LessThanOrEqualTo((LogBudget.LinesPerWindow + 1) * (Seconds + 1)), "at most the budget and one summary a second");
            Assert.That(bytes, Is.LessThanOrEqualTo(160_000), "bytes a minute");
            Assert.That(written.Select(e => e.Message), Has.Some.Contains("warning lines left out"), "what was left out is said");
        });
    }

    /// <summary>SYN number <paramref name="i"/>: each from another /24 to another destination.</summary>
    internal static byte[] Syn(int i)
    {
        var packet = PacketBuilder.Build(false, (ushort)(10_000 + (i % 50_000)), TcpFlags.Syn, EngineHarness.V1Capable);
        byte[] source = [198, 18, (byte)i, (byte)(1 + (i >> 8))];
        byte[] destination = [198, 19, (byte)(i >> 8), (byte)i];
        source.CopyTo(packet, 12);
        destination.CopyTo(packet, 16);
        if (InternetChecksum.TryFillChecksums(packet) != WireError.None)
        {
            throw new InvalidOperationException("checksum");
        }

        return packet;
    }
}
