using System.Buffers.Binary;
using System.Security.Cryptography;
using ProxySelection.Interception.Bpf;

namespace ProxySelection.Interception.Tests.Bpf;

/// <summary>
/// The managed compression and the midstate HMAC the kernel program is built around, against
/// System.Security.Cryptography: if these hold, the kernel's inputs (midstates, padding, lengths) are right.
/// </summary>
[TestFixture]
public sealed class Sha256BlockTests
{
    [Test]
    public void CompressOverPaddedMessage_EqualsSha256HashData([Values(0, 1, 52, 55, 56, 63, 64, 80, 119, 120, 183)] int length)
    {
        var message = new byte[length];
        new Random(length).NextBytes(message);
        int blocks = Sha256Block.PaddedBlocks(length);
        var padded = new byte[blocks * 64];
        Sha256Block.WritePadded(padded, message, 0);
        var state = Sha256Block.InitialState();
        for (int b = 0; b < blocks; b++)
        {
            Sha256Block.Compress(state, padded.AsSpan(b * 64, 64));
        }

        var digest = new byte[32];
        for (int i = 0; i < 8; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(digest.AsSpan(i * 4), state[i]);
        }

        Assert.That(digest, Is.EqualTo(SHA256.HashData(message)));
    }

    [Test]
    public void HmacFromMidstates_EqualsHmacSha256([Values(16, 32, 64)] int keyLength, [Range(52, 80, 4)] int messageLength)
    {
        var random = new Random((keyLength * 1000) + messageLength);
        var key = new byte[keyLength];
        var message = new byte[messageLength];
        random.NextBytes(key);
        random.NextBytes(message);
        var (inner, outer) = Sha256Block.HmacMidstates(key);
        Assert.That(Sha256Block.HmacFromMidstates(inner, outer, message), Is.EqualTo(HMACSHA256.HashData(key, message)));
    }

    [Test]
    public void PaddedBlocks_Ipv4InputsOneBlock_Ipv6InputsTwo()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Sha256Block.PaddedBlocks(52), Is.EqualTo(1), "long form, IPv4 SYN");
            Assert.That(Sha256Block.PaddedBlocks(54), Is.EqualTo(1), "short form, IPv4 SYN/ACK");
            Assert.That(Sha256Block.PaddedBlocks(55), Is.EqualTo(1));
            Assert.That(Sha256Block.PaddedBlocks(56), Is.EqualTo(2));
            Assert.That(Sha256Block.PaddedBlocks(80), Is.EqualTo(2), "long form, IPv6 SYN/ACK (the longest M)");
        });
    }

    [Test]
    public void KeyLongerThanABlock_Rejected() =>
        Assert.That(() => Sha256Block.HmacMidstates(new byte[65]), Throws.ArgumentException);
}
