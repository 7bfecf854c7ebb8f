using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Tests.Flows;

namespace ProxySelection.Engine.Tests.Diagnostics;

/// <summary>Issue 12, spec §11.3/§13.3: the global probe cap through the engine — SYNs beyond it pass untouched, counted, logged once per episode.</summary>
public sealed class ProbeRateCapTests
{
    private const int CapEventId = 124;

    [Test]
    public async Task FloodOverDistinctSourcesAndDestinations_ProbesCappedAtTheGlobalRate_RestPassedCountedLoggedOncePerEpisode()
    {
        var log = new RecordingLogger();
        await using var h = new EngineHarness(o => o.ProbeRateGlobal = 100, log: log);
        const int PerSecond = 1_000;
        const int Seconds = 5;
        for (int i = 0; i < PerSecond * Seconds; i++)
        {
            h.Ingress(LogBoundTests.Syn(i));
            h.Time.Advance(TimeSpan.FromSeconds(1.0 / PerSecond));
        }

        var negotiator = h.Engine.Negotiator;
        long started = h.Engine.Counters.ProbesStarted;
        var capLines = log.Entries.Count(e => e.Id.Id == CapEventId);
        var status = StatusReplies.Status(h.Engine, h.Options, TimeSpan.FromSeconds(Seconds)).Decisions;
        Assert.Multiple(() =>
        {
            Assert.That(started, Is.InRange(100 * Seconds, (100 * Seconds) + 100), "rate x time plus one burst");
            Assert.That(negotiator.ProbesRateCapped, Is.EqualTo((PerSecond * Seconds) - started), "every other SYN passed as capped");
            Assert.That(h.Engine.Counters.Passed, Is.GreaterThanOrEqualTo(negotiator.ProbesRateCapped), "capped SYNs were passed");
            Assert.That(status["probes_rate_capped"], Is.EqualTo(negotiator.ProbesRateCapped));
            Assert.That(status["probes_rate_limited"], Is.EqualTo(negotiator.ProbesRateLimited));
            Assert.That(capLines, Is.InRange(1, LogBudget.LinesPerWindow * (Seconds + 1)), "one line per episode, within the warning budget");
            Assert.That(log.Entries.Where(e => e.Id.Id == CapEventId).Select(e => e.Level), Is.All.EqualTo(LogLevel.Warning));
        });
    }
}
