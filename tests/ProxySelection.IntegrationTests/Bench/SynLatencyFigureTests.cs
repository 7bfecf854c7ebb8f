using ProxySelection.Bench;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Bench;

/// <summary>The SYN decision latency figure: the engine's histogram, its log line, the bench's parsing and goals (no lab).</summary>
[TestFixture]
public sealed class SynLatencyFigureTests
{
    [Test]
    public void LatencyHistogram_KnownSamples_PercentilesWithinOneBucket()
    {
        var h = new LatencyHistogram();
        for (int us = 1; us <= 1000; us++)
        {
            h.RecordMicroseconds(us);
        }

        Assert.Multiple(() =>
        {
            Assert.That(h.Count, Is.EqualTo(1000));
            Assert.That(h.MaxMicroseconds, Is.EqualTo(1000));
            // 8 buckets per power of two: the bucket's upper bound is at most 12.5 % above the true value.
            Assert.That(h.PercentileMicroseconds(50), Is.InRange(500, 563));
            Assert.That(h.PercentileMicroseconds(99), Is.InRange(990, 1000));
            Assert.That(h.PercentileMicroseconds(100), Is.EqualTo(1000));
        });
    }

    [Test]
    public void LatencyHistogram_Empty_ZeroEverywhere()
    {
        var h = new LatencyHistogram();

        Assert.That((h.PercentileMicroseconds(99), h.MaxMicroseconds, h.ToString()), Is.EqualTo((0L, 0L, "n=0 p50_us=0 p90_us=0 p99_us=0 max_us=0")));
    }

    [Test]
    public void LatencyHistogram_SmallValues_ExactBelowEight()
    {
        var h = new LatencyHistogram();
        h.RecordMicroseconds(3);
        h.RecordMicroseconds(-5);

        Assert.That((h.PercentileMicroseconds(50), h.PercentileMicroseconds(100)), Is.EqualTo((0L, 3L)));
    }

    [Test]
    public void EngineSynLatencyParse_EngineLine_ReadsBothHistograms()
    {
        var latency = new VerdictLatency(TimeProvider.System);
        latency.Immediate.RecordMicroseconds(40);
        latency.Deferred.RecordMicroseconds(3000);
        string output = "proxysel: running role=Downgrade\nsyn a -> b Tcp: Pass (NotMptcp)\n" + latency + "\nproxysel: stopped, rules removed; syns=1\n";

        var parsed = EngineSynLatency.Parse(output);

        // One sample each: every percentile is that sample (a bucket bound never exceeds the maximum).
        Assert.That(parsed, Is.EqualTo(new EngineSynLatency(1, 40, 40, 40, 1, 3000, 3000, 3000)));
    }

    [Test]
    public void EngineSynLatencyParse_NoLine_Null()
    {
        Assert.That(EngineSynLatency.Parse("proxysel: stopped, rules removed; syns=1"), Is.Null);
    }

    [Test]
    public void IperfParse_ErrorMemberWithEmptyEnd_LabExceptionNamingTheError()
    {
        var e = Assert.Throws<LabException>(() => Iperf.Parse("""{"start":{},"intervals":[],"end":{},"error":"control socket has closed unexpectedly"}"""));

        Assert.That(e!.Message, Does.Contain("control socket has closed unexpectedly"));
    }

    [Test]
    public void IperfParse_Complete_ReadsReceivedRateBytesAndIntervals()
    {
        var r = Iperf.Parse("""
            {"intervals":[{"sum":{"bits_per_second":1e9}},{"sum":{"bits_per_second":2e8}}],
             "end":{"sum_sent":{"bits_per_second":9,"bytes":9},"sum_received":{"bits_per_second":6e8,"bytes":75000000}}}
            """);

        Assert.That((r.BitsPerSecond, r.Bytes, r.IntervalBitsPerSecond.Count), Is.EqualTo((6e8, 75000000L, 2)));
    }

    [Test]
    public void IperfParse_NoEnd_LabException()
    {
        Assert.Throws<LabException>(() => Iperf.Parse("""{"intervals":[]}"""));
    }

    [Test]
    public void ToTable_GoalsBlock_EveryGoalOfTheIssueWithItsVerdict()
    {
        var results = new BenchResults(new BenchOptions { Rounds = 1 }, new MachineDescription("cpu", 2, "6.18", ".NET", "1 1 1", "h", "s"),
            DateTimeOffset.UnixEpoch);
        var relay = new SubjectResult(new RelaySubject(TransportProtocol.Tcp));
        relay.ThroughputBps.Add(new Sample(6e9, 1));
        relay.ConnectionsPerSecond.Add(new Sample(5000, 1));
        var haproxy = new SubjectResult(new HaproxySubject(mptcpize: false));
        haproxy.ThroughputBps.Add(new Sample(4e9, 1));
        haproxy.ConnectionsPerSecond.Add(new Sample(10000, 1));
        results.Subjects.Add(relay);
        results.Subjects.Add(haproxy);

        var table = BenchReport.ToTable(results);
        var json = BenchReport.ToJson(results);

        Assert.Multiple(() =>
        {
            Assert.That(table, Does.Contain("goals (issue 7, same run):"));
            Assert.That(table, Does.Match(@"TCP→TCP holding throughput ≥ 1\.0× HAProxy\s+1\.500\s+met"));
            Assert.That(table, Does.Match(@"new connections/s ≥ HAProxy \(TCP, relay\)\s+0\.500\s+NOT MET"));
            Assert.That(table, Does.Match(@"cache-hit decision adds < 100 µs.*not measured"));
            Assert.That(json["goals"]!.AsObject().Count, Is.EqualTo(16));
            Assert.That(json["goals"]!["conn_rate_vs_haproxy"]!["met"]!.GetValue<bool>(), Is.False);
        });
    }
}
