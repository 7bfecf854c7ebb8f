using System.Buffers.Binary;
using ProxySelection.Interception.Bpf;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>
/// The join map as the daemon keeps it (root, real maps): it starts with the foreign match closed, an ended
/// connection's token goes, the sweep removes only old tokens no held connection owns, and a full map refuses a token
/// (the caller then closes the foreign match). Where the host has no bpf file system at /sys/fs/bpf the map pins on one
/// of its own at /run/proxysel/bpf, mounted in the test's (the host's) mount namespace: unmounted again after each test.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class KernelJoinTokensTests
{
    private SafeHandleHolder _holder = null!;
    private bool _mountedBefore;

    [SetUp]
    public void SetUp()
    {
        _mountedBefore = OwnMountPresent();
        var counters = BpfNative.CreateMap(BpfNative.MapTypePercpuArray, 4, 8, 9, 0, "psel_t_cnt", out int errno);
        Assert.That(counters.IsInvalid, Is.False, BpfNative.Errno(errno));
        Assert.That(KernelJoinTokens.TryCreate($"proxysel-test-{Environment.ProcessId}", 4, counters, out var joins, out string? reason), Is.True, reason);
        _holder = new SafeHandleHolder(counters, joins!);
    }

    [TearDown]
    public void TearDown()
    {
        _holder?.Dispose();
        if (!_mountedBefore && OwnMountPresent())
        {
            using var umount = System.Diagnostics.Process.Start("umount", KernelJoinTokens.OwnPinDirectory);
            umount.WaitForExit(10_000);
        }
    }

    private static bool OwnMountPresent() =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == KernelJoinTokens.OwnPinDirectory && l.Contains(" - bpf ", StringComparison.Ordinal));

    [Test]
    public void Created_ForeignMatchClosed_BothMatchesPinned()
    {
        var joins = _holder.Joins;
        Assert.Multiple(() =>
        {
            Assert.That(joins.ReadState().Acknowledged, Is.EqualTo(JoinMapState.Blocked), "closed until the daemon opens it");
            Assert.That(File.Exists(joins.PinPath), Is.True);
            Assert.That(File.Exists(joins.ForeignPinPath), Is.True);
            Assert.That(Path.GetFileName(joins.ForeignPinPath), Is.EqualTo(Path.GetFileName(joins.PinPath)), "the same name: cleanup reads the pid from it");
        });
    }

    [Test]
    public void AddRemoveAndSweep_OnlyOldTokensNoHeldConnectionOwnsAreSwept()
    {
        var joins = _holder.Joins;
        Assert.That(joins.Add(0xA0000001), Is.Zero);
        Assert.That(joins.Add(0xA0000002), Is.Zero);
        Assert.That(joins.Add(0xA0000003), Is.Zero);
        joins.Remove(0xA0000003);
        Assert.That(Contains(joins, 0xA0000003), Is.False, "an ended connection's token goes");

        Assert.That(joins.Sweep(_ => false, TimeSpan.FromMinutes(1)), Is.Zero, "nothing is a minute old");
        Assert.That(joins.Sweep(token => token == 0xA0000001, TimeSpan.Zero), Is.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(Contains(joins, 0xA0000001), Is.True, "a held connection's token stays, however old");
            Assert.That(Contains(joins, 0xA0000002), Is.False, "a handshake that never became a connection goes");
        });
    }

    [Test]
    public void FullMap_RefusesAToken_WithE2Big()
    {
        var joins = _holder.Joins;
        for (uint t = 1; t <= 4; t++)
        {
            Assert.That(joins.Add(t), Is.Zero);
        }

        Assert.That(joins.Add(5), Is.EqualTo(7), "E2BIG");
        Assert.That(joins.Add(4), Is.Zero, "a token already there is only restamped");
    }

    private static bool Contains(KernelJoinTokens joins, uint token)
    {
        var key = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(key, token);
        return joins.Contains(key);
    }

    private sealed record SafeHandleHolder(Microsoft.Win32.SafeHandles.SafeFileHandle Counters, KernelJoinTokens Joins) : IDisposable
    {
        public void Dispose()
        {
            Joins.Dispose();
            Counters.Dispose();
        }
    }
}
