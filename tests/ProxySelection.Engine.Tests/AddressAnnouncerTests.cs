using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using ProxySelection.Engine;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Engine.Tests;

public sealed class AddressAnnouncerTests
{
    private static readonly IPAddress Mine = IPAddress.Parse("198.18.7.1");
    private static readonly IPAddress Operators = IPAddress.Parse("198.18.7.2");
    private string _directory = "";

    private string RecordPath => Path.Combine(_directory, "PSEL-1.endpoints");

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-announce-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public async Task AnnounceAsync_NewAddress_AddsSignalEndpointAndRecordsTheKernelsId()
    {
        var kernel = new FakeEndpoints();
        var announcer = new AddressAnnouncer([Mine], RecordPath, kernel, NullLogger.Instance);

        await announcer.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(kernel.Commands, Has.Some.EqualTo("ip mptcp endpoint add 198.18.7.1 signal"));
        Assert.That(announcer.Announced, Is.EqualTo(new[] { new MptcpEndpoint(1, Mine) }));
        Assert.That(AddressAnnouncer.ReadRecord(RecordPath), Is.EqualTo(new[] { new MptcpEndpoint(1, Mine) }));
    }

    [Test]
    public async Task AnnounceAsync_AddressAlreadyAnEndpoint_LeavesTheOperatorsEndpointAloneAndRecordsNothing()
    {
        var kernel = new FakeEndpoints();
        kernel.Endpoints.Add(new MptcpEndpoint(5, Operators));
        var announcer = new AddressAnnouncer([Operators], RecordPath, kernel, NullLogger.Instance);

        await announcer.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        await announcer.WithdrawAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(kernel.Commands, Has.None.Contains("endpoint add").And.None.Contains("endpoint delete"));
        Assert.That(kernel.Endpoints, Is.EqualTo(new[] { new MptcpEndpoint(5, Operators) }));
        Assert.That(announcer.Announced, Is.Empty);
    }

    [Test]
    public async Task WithdrawAsync_DeletesOnlyItsOwnEndpointsAndTheRecord_Twice()
    {
        var kernel = new FakeEndpoints();
        kernel.Endpoints.Add(new MptcpEndpoint(5, Operators));
        var announcer = new AddressAnnouncer([Mine], RecordPath, kernel, NullLogger.Instance);
        await announcer.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));

        await announcer.WithdrawAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        await announcer.WithdrawAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(kernel.Endpoints, Is.EqualTo(new[] { new MptcpEndpoint(5, Operators) }));
        Assert.That(kernel.Commands.Count(c => c.Contains("endpoint delete", StringComparison.Ordinal)), Is.EqualTo(1));
        Assert.That(File.Exists(RecordPath), Is.False);
    }

    [Test]
    public async Task CleanupAsync_RecordedEndpointReusedByTheOperator_NotDeleted()
    {
        // A crashed proxy recorded id 1 for 198.18.7.1; the operator has since put another address under id 1.
        File.WriteAllText(RecordPath, "1 198.18.7.1\n");
        var kernel = new FakeEndpoints();
        kernel.Endpoints.Add(new MptcpEndpoint(1, Operators));

        int removed = await AddressAnnouncer.CleanupAsync(RecordPath, kernel, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(removed, Is.Zero);
        Assert.That(kernel.Endpoints, Is.EqualTo(new[] { new MptcpEndpoint(1, Operators) }));
        Assert.That(File.Exists(RecordPath), Is.False);
    }

    [Test]
    public async Task AnnounceAsync_LeftoverOfACrashedRun_RemovedThenAddedAgain()
    {
        var kernel = new FakeEndpoints();
        kernel.Endpoints.Add(new MptcpEndpoint(3, Mine));
        File.WriteAllText(RecordPath, "3 198.18.7.1\n");
        var announcer = new AddressAnnouncer([Mine], RecordPath, kernel, NullLogger.Instance);

        await announcer.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(kernel.Commands, Has.Some.EqualTo("ip mptcp endpoint delete id 3"));
        Assert.That(kernel.Endpoints.Select(e => e.Address), Is.EqualTo(new[] { Mine }));
        Assert.That(AddressAnnouncer.ReadRecord(RecordPath), Is.EqualTo(announcer.Announced));
    }

    [Test]
    public async Task WithdrawAsync_KernelRefusesTheDelete_StaysRecordedAndTheNextRunOrCleanupFindsIt()
    {
        var kernel = new FakeEndpoints();
        var first = new AddressAnnouncer([Mine], RecordPath, kernel, NullLogger.Instance);
        await first.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        kernel.RefuseDelete = true;

        await first.WithdrawAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(AddressAnnouncer.ReadRecord(RecordPath), Is.EqualTo(new[] { new MptcpEndpoint(1, Mine) }), "not deleted: still recorded");

        // The next run's own cleanup is refused too: the endpoint is still its own, announced, and recorded.
        var second = new AddressAnnouncer([Mine], RecordPath, kernel, NullLogger.Instance);
        await second.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(second.Announced, Is.EqualTo(new[] { new MptcpEndpoint(1, Mine) }));
        Assert.That(kernel.Commands.Count(c => c.Contains("endpoint add", StringComparison.Ordinal)), Is.EqualTo(1));

        kernel.RefuseDelete = false;
        int removed = await AddressAnnouncer.CleanupAsync(RecordPath, kernel, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That((removed, kernel.Endpoints.Count, File.Exists(RecordPath)), Is.EqualTo((1, 0, false)));
    }

    [Test]
    public async Task CleanupAsync_NoRecordAndNoFolder_NothingToDo()
    {
        var kernel = new FakeEndpoints();
        int removed = await AddressAnnouncer.CleanupAsync(Path.Combine(_directory, "missing", "x.endpoints"), kernel, CancellationToken.None)
            .WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(removed, Is.Zero);
        Assert.That(kernel.Commands, Is.Empty);
    }

    [Test]
    public void AnnounceAsync_IpToolRefuses_ThrowsNamingTheKey()
    {
        var kernel = new FakeEndpoints { RefuseAdd = true };
        var announcer = new AddressAnnouncer([Mine], RecordPath, kernel, NullLogger.Instance);

        var e = Assert.ThrowsAsync<InterceptionRulesException>(() => announcer.AnnounceAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.That(e!.Message, Does.StartWith("Proxy:AnnounceAddresses: "));
    }

    [Test]
    public void NotLocal_AddressOfNoInterface_Named()
    {
        var announcer = new AddressAnnouncer([Mine, Operators], RecordPath, new FakeEndpoints(), NullLogger.Instance);
        Assert.That(announcer.NotLocal(new HashSet<IPAddress> { Mine }), Is.EqualTo(new[] { Operators }));
    }

    [TestCase("""[{"address":"198.18.7.1","id":1,"signal":true},{"address":"2001:db8::7","id":7,"subflow":true}]""", 2)]
    [TestCase("[]", 0)]
    [TestCase("", 0)]
    [TestCase("not json", 0)]
    [TestCase("""{"address":"198.18.7.1","id":1}""", 0)]
    [TestCase("""[{"address":"nowhere","id":1},{"id":"x","address":"198.18.7.1"},17]""", 0)]
    public void ParseEndpoints_WhatIpPrints_EndpointsWithIdAndAddressOnly(string json, int count)
    {
        Assert.That(AddressAnnouncer.ParseEndpoints(json), Has.Count.EqualTo(count));
    }

    /// <summary>The kernel's endpoint table as <c>ip mptcp endpoint</c> drives it (ids from 1, first free).</summary>
    private sealed class FakeEndpoints : ICommandRunner
    {
        public List<MptcpEndpoint> Endpoints { get; } = [];

        public List<string> Commands { get; } = [];

        public bool RefuseAdd { get; init; }

        public bool RefuseDelete { get; set; }

        public Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
        {
            Commands.Add(file + " " + string.Join(' ', args));
            switch (args)
            {
                case ["-j", "mptcp", "endpoint", "show"]:
                    return Done(0, "[" + string.Join(',', Endpoints.Select(e => $$"""{"address":"{{e.Address}}","id":{{e.Id}},"signal":true}""")) + "]");
                case ["mptcp", "endpoint", "add", var address, "signal"] when !RefuseAdd && Endpoints.All(e => e.Address.ToString() != address):
                    int id = Enumerable.Range(1, 255).First(i => Endpoints.All(e => e.Id != i));
                    Endpoints.Add(new MptcpEndpoint(id, IPAddress.Parse(address)));
                    return Done(0, "");
                case ["mptcp", "endpoint", "delete", "id", var text] when !RefuseDelete && Endpoints.Any(e => e.Id == int.Parse(text, System.Globalization.CultureInfo.InvariantCulture)):
                    Endpoints.RemoveAll(e => e.Id == int.Parse(text, System.Globalization.CultureInfo.InvariantCulture));
                    return Done(0, "");
                default:
                    return Done(2, "", "Error: too many addresses or duplicate one: -17.");
            }
        }

        private static Task<CommandOutcome> Done(int exit, string stdout, string stderr = "") => Task.FromResult(new CommandOutcome(exit, stdout, stderr));
    }
}
