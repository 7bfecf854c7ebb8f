using System.Text.Json.Nodes;
using ProxySelection.Bench;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Bench;

/// <summary>The bench's parsing and arithmetic on fixed inputs (no lab, no timing).</summary>
[TestFixture]
public sealed class BenchReportTests
{
    private const string WrkOutput = """
        Running 1s test @ http://198.18.1.1:21002/small
          1 threads and 16 connections
          Thread Stats   Avg      Stdev     Max   +/- Stdev
            Latency     1.23ms    2.34ms  30.12ms   95.00%
            Req/Sec     7.00k   500.00     8.00k    80.00%
          Latency Distribution
             50%  512.00us
             75%    1.10ms
             90%    2.00ms
             99%   12.34ms
          7000 requests in 1.00s, 1.50MB read
          Socket errors: connect 1, read 3, write 0, timeout 2
          Non-2xx or 3xx responses: 4
        Requests/sec:   6990.12
        Transfer/sec:      1.50MB
        """;

    [Test]
    public void WrkParse_FullOutput_ReadsRatePercentilesInMillisecondsAndErrors()
    {
        var r = Wrk.Parse(WrkOutput);

        Assert.That(r.RequestsPerSecond, Is.EqualTo(6990.12).Within(1e-9));
        Assert.That(r.P50Ms, Is.EqualTo(0.512).Within(1e-9));
        Assert.That(r.P99Ms, Is.EqualTo(12.34).Within(1e-9));
        Assert.That(r.Requests, Is.EqualTo(7000));
        Assert.That(r.SocketErrors, Is.EqualTo(6));
        Assert.That(r.Non2xx, Is.EqualTo(4));
    }

    [Test]
    public void WrkParse_NoRateLine_ThrowsLabException()
    {
        Assert.Throws<ProxySelection.Lab.LabException>(() => Wrk.Parse("unable to connect to 198.18.1.1:80 Connection refused"));
    }

    [Test]
    public void ToJson_RatiosFromMedians_NullWhereASideIsMissing()
    {
        var results = new BenchResults(new BenchOptions { Rounds = 3 }, new MachineDescription("cpu", 2, "6.18", ".NET", "1 1 1", "h", "s"),
            DateTimeOffset.UnixEpoch);
        Add(results, new DirectSubject(mptcp: false), throughput: [10e9, 12e9, 11e9], cpu: [], conn: [20_000]);
        Add(results, new RelaySubject(TransportProtocol.Tcp), throughput: [6e9, 5e9, 9e9], cpu: [0.5, 0.7, 0.6], conn: [9_000]);
        Add(results, new HaproxySubject(mptcpize: false), throughput: [4e9, 3e9, 5e9], cpu: [0.9, 1.0, 0.8], conn: [12_000]);

        var json = BenchReport.ToJson(results);

        Assert.Multiple(() =>
        {
            Assert.That(json["holding_vs_haproxy_throughput"]!.GetValue<double>(), Is.EqualTo(1.5).Within(1e-9));   // 6 / 4
            Assert.That(json["holding_vs_direct_throughput"]!.GetValue<double>(), Is.EqualTo(0.545).Within(1e-9)); // 6 / 11, rounded
            Assert.That(json["holding_vs_haproxy_cpu_per_gb"]!.GetValue<double>(), Is.EqualTo(0.667).Within(1e-9));
            Assert.That(json["conn_rate_vs_haproxy"]!.GetValue<double>(), Is.EqualTo(0.75).Within(1e-9));
            Assert.That(json.ContainsKey("passthrough_vs_direct_throughput"), Is.True);
            Assert.That(json["passthrough_vs_direct_throughput"], Is.Null);
            Assert.That(json["subjects"]!["relay-tcp"]!["throughput_bps"]!.GetValue<double>(), Is.EqualTo(6e9));
            Assert.That(json["subjects"]!["relay-tcp"]!["throughput_bps_rounds"]!.AsArray(), Has.Count.EqualTo(3));
            Assert.That(BenchReport.ToTable(results), Does.Contain("relay-tcp").And.Contain("holding_vs_haproxy_throughput"));
            Assert.That(JsonNode.Parse(BenchReport.ToJsonLine(results)), Is.Not.Null);
        });
    }

    [Test]
    public void ToJson_MptcpPassThroughBesideDirectMptcp_RatiosAddedSynTimeAndCpuPerConnection()
    {
        var results = new BenchResults(new BenchOptions { Rounds = 1 }, new MachineDescription("cpu", 2, "6.18", ".NET", "1 1 1", "h", "s"),
            DateTimeOffset.UnixEpoch);
        var direct = Add(results, new DirectSubject(mptcp: true), throughput: [10e9], cpu: [], conn: [8_000]);
        direct.ConnectP99Us.Add(new Sample(300, 1.0));
        var pass = Add(results, new EngineSubject(EngineTraffic.PassThroughMptcp), throughput: [9e9], cpu: [], conn: [6_000]);
        pass.ConnectP99Us.Add(new Sample(380, 1.0));
        pass.CpuMicrosPerConnection.AddRange([new Sample(30, 1.0), new Sample(10, 1.0), new Sample(20, 1.0)]);

        var json = BenchReport.ToJson(results);

        Assert.Multiple(() =>
        {
            Assert.That(json["passthrough_mptcp_vs_direct_mptcp_throughput"]!.GetValue<double>(), Is.EqualTo(0.9).Within(1e-9));
            Assert.That(json["conn_rate_passthrough_mptcp_vs_direct_mptcp"]!.GetValue<double>(), Is.EqualTo(0.75).Within(1e-9));
            Assert.That(json["syn_added_p99_us_passthrough_mptcp"]!.GetValue<double>(), Is.EqualTo(80).Within(1e-9));
            Assert.That(json["conn_rate_passthrough_vs_direct"], Is.Null, "the plain TCP pass-through was not measured");
            Assert.That(json["goals"]!["syn_added_p99_us_passthrough_mptcp"]!["met"]!.GetValue<bool>(), Is.True);
            Assert.That(json["goals"]!["conn_rate_passthrough_mptcp_vs_direct_mptcp"]!["met"]!.GetValue<bool>(), Is.False);
            Assert.That(json["subjects"]!["proxy-passthrough-mptcp"]!["client_mptcp"]!.GetValue<bool>(), Is.True);
            Assert.That(json["subjects"]!["proxy-passthrough-mptcp"]!["cpu_us_per_connection"]!.GetValue<double>(), Is.EqualTo(20), "the median of the rounds");
            Assert.That(json["subjects"]!["direct-mptcp"]!["cpu_us_per_connection"], Is.Null, "nothing in user space");
        });
    }

    [Test]
    public void EngineSubject_EachTraffic_NameClientAndServerProtocolsAndIdleMemory()
    {
        Assert.Multiple(() =>
        {
            Assert.That(BenchSubject.Standard(includeEngine: true).OfType<EngineSubject>().Select(s => s.Name),
                Is.EqualTo(new[] { "proxy-passthrough", "proxy-passthrough-mptcp", "proxy-holding" }));
            Assert.That(new EngineSubject(EngineTraffic.PassThroughTcp) is { ClientMptcp: false, ServerMptcp: false, MeasuresIdleMemory: false });
            Assert.That(new EngineSubject(EngineTraffic.PassThroughMptcp) is { ClientMptcp: true, ServerMptcp: true, MeasuresIdleMemory: false });
            Assert.That(new EngineSubject(EngineTraffic.Holding) is { ClientMptcp: true, ServerMptcp: false, MeasuresIdleMemory: true });
        });
    }

    [Test]
    public void ToJson_EngineBesideHaproxyAndSocatMptcp_Issue13GoalsFromTheSameRun()
    {
        var results = new BenchResults(new BenchOptions { Rounds = 1 }, new MachineDescription("cpu", 2, "6.18", ".NET", "1 1 1", "h", "s"),
            DateTimeOffset.UnixEpoch) { EngineStartToReadyMs = 900, EngineIdleRssKiB = 60_000 };
        var engine = Add(results, new EngineSubject(EngineTraffic.Holding), throughput: [5e9], cpu: [0.6], conn: [2_000]);
        engine.CpuMicrosPerConnection.Add(new Sample(300, 1.0));
        var haproxy = Add(results, new HaproxySubject(mptcpize: true), throughput: [4e9], cpu: [0.5], conn: [4_000]);
        haproxy.CpuMicrosPerConnection.Add(new Sample(100, 1.0));
        Add(results, new SocatSubject(mptcpize: true), throughput: [3e9], cpu: [1.2], conn: [1_000]);

        var json = BenchReport.ToJson(results);
        var goals = json["goals_issue13"]!;

        Assert.Multiple(() =>
        {
            Assert.That(goals["conn_rate_engine_holding_vs_haproxy_mptcp"]!["value"]!.GetValue<double>(), Is.EqualTo(0.5).Within(1e-9));
            Assert.That(goals["conn_rate_engine_holding_vs_haproxy_mptcp"]!["met"]!.GetValue<bool>(), Is.False);
            Assert.That(goals["engine_holding_vs_haproxy_mptcp_cpu_per_connection"]!["value"]!.GetValue<double>(), Is.EqualTo(3).Within(1e-9));
            Assert.That(goals["engine_holding_vs_haproxy_mptcp_throughput"]!["met"]!.GetValue<bool>(), Is.True);
            // The worse of 0.6/0.5 (HAProxy) and 0.6/1.2 (socat).
            Assert.That(goals["engine_holding_cpu_per_gb_vs_best"]!["value"]!.GetValue<double>(), Is.EqualTo(1.2).Within(1e-9));
            Assert.That(goals["engine_holding_cpu_per_gb_vs_best"]!["met"]!.GetValue<bool>(), Is.False);
            Assert.That(goals["engine_start_to_ready_ms"]!["value"]!.GetValue<double>(), Is.EqualTo(900));
            Assert.That(goals["engine_idle_rss_kib"]!["value"]!.GetValue<double>(), Is.EqualTo(60_000));
            Assert.That(goals["bursts"]!["met"], Is.Null, "measured by the burst integration test, not the bench");
            Assert.That(json["goals"]!["engine_holding_vs_haproxy_mptcp_throughput"]!["met"]!.GetValue<bool>(), Is.True, "issue 7's block is kept");
            Assert.That(BenchReport.ToTable(results), Does.Contain("goals (issue 13, same run):").And.Contain("goals (issue 7, same run):"));
        });
    }

    private static SubjectResult Add(BenchResults results, BenchSubject subject, double[] throughput, double[] cpu, double[] conn)
    {
        var r = new SubjectResult(subject);
        r.ThroughputBps.AddRange(throughput.Select(v => new Sample(v, 1.0)));
        r.CpuSecondsPerGb.AddRange(cpu.Select(v => new Sample(v, 1.0)));
        r.ConnectionsPerSecond.AddRange(conn.Select(v => new Sample(v, 1.0)));
        results.Subjects.Add(r);
        return r;
    }
}
